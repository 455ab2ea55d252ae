//! `bpgg predict` decodes the next batch while it scores the current one: the results must not
//! depend on the batch size, in values or in order.

use crate::util::{bpgg, s, small_dataset, stderr};

#[test]
fn results_do_not_depend_on_the_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let model = dir.path().join("model.bpgg");
    let out = bpgg(&[
        "fit",
        "--normal",
        s(&cat.join("train/good")),
        "--scoring",
        "knn",
        "--size",
        "32",
        "-o",
        s(&model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = |batch: &str| -> Vec<String> {
        let pred = dir.path().join(format!("pred{batch}"));
        let out = bpgg(&[
            "predict",
            "--model",
            s(&model),
            s(&cat.join("test")),
            "-o",
            s(&pred),
            "--batch",
            batch,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines = std::fs::read_to_string(pred.join("results.jsonl")).unwrap();
        // The map paths differ by output folder; everything else must be equal.
        lines
            .lines()
            .map(|l| l.replace(&format!("pred{batch}"), "pred"))
            .collect()
    };
    let one = results("1");
    assert_eq!(one.len(), 15);
    assert_eq!(one, results("4"));
}
