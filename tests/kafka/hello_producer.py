from kafka import KafkaProducer

producer = KafkaProducer(bootstrap_servers='localhost:9092')
for i in range(10):
    producer.send('test', f'Hello {i}'.encode())
producer.flush()
