//! How listings are printed: aligned tables for people, JSON for scripts.

use std::io::{self, Write};

/// Output format of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Output {
    /// An aligned table.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// A table whose columns are padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(titles: &[&str]) -> Self {
        Table {
            rows: vec![titles.iter().map(|t| (*t).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the titles and rows, columns separated by two spaces.
    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Writes `value` as one line of JSON.
pub(crate) fn write_json(out: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() -> io::Result<()> {
        let mut table = Table::new(&["NAME", "PARTITIONS"]);
        table.row(vec!["a-long-name".into(), "3".into()]);
        table.row(vec!["b".into(), "12".into()]);
        let mut out = Vec::new();
        table.write(&mut out)?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "NAME         PARTITIONS\na-long-name  3\nb            12\n"
        );
        Ok(())
    }
}
