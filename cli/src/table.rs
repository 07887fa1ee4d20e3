//! Plain text tables for the terminal: left-aligned columns, two spaces apart.

/// Renders `header` and `rows` as aligned columns, each line indented by `indent`.
pub(crate) fn render(indent: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::from(indent);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let text = render(
            "  ",
            &["SERVICE", "URL"],
            &[
                vec!["users".into(), "http://127.0.0.1:7711".into()],
                vec!["gateway".into(), "-".into()],
            ],
        );
        insta::assert_snapshot!(text, @r"
          SERVICE  URL
          users    http://127.0.0.1:7711
          gateway  -
        ");
    }
}
