//! The one markdown table renderer of `bpgg score` and `bpgg eval`: a name column, then the five
//! metrics, right-aligned.

/// The metric columns every table shows, in order.
pub(crate) const METRIC_COLUMNS: [&str; 5] =
    ["pixel AUROC", "AUPRO", "pixel AP", "F1-max", "image AUROC"];

/// A markdown table with a left-aligned first column and right-aligned others; each row holds
/// one cell per header.
pub(crate) fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for c in cells {
            s.push(' ');
            s.push_str(c);
            s.push_str(" |");
        }
        s.push('\n');
        s
    };
    let mut out = line(&mut header.iter().copied());
    out.push_str("|---|");
    for _ in 1..header.len() {
        out.push_str("---:|");
    }
    out.push('\n');
    for row in rows {
        debug_assert_eq!(row.len(), header.len());
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_alignment_and_rows() {
        let table = markdown_table(
            &["type", "a", "b"],
            &[vec!["x".into(), "1".into(), "2".into()]],
        );
        assert_eq!(table, "| type | a | b |\n|---|---:|---:|\n| x | 1 | 2 |\n");
    }
}
