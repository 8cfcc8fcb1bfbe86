//! `locus pe show` draws every positional encoding, and what a checkpoint learned.

use std::process::Command;

fn locus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_locus")).args(args).output().expect("running locus")
}

#[test]
fn every_kind_draws_its_panels() {
    let dir = tempfile::tempdir().unwrap();
    let expected = [
        ("sinusoidal", "cosine similarity of positions"),
        ("learned", "learned table (untrained)"),
        ("relative", "clipped distance j - i (max 16)"),
        ("t5", "T5 bucket of j - i (bidirectional)"),
        ("rope", "cos(rotation angle)"),
        ("alibi", "head 0: -0.5000·|i - j|"),
        ("fire", "FIRE input ψ(i - j) / ψ(max(L, i)) (untrained)"),
        ("kerple", "head 0 (untrained): -"),
        ("xpos", "query scale ζ^(n/512)"),
    ];
    let list = locus(&["pe", "list"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let kinds = String::from_utf8(list.stdout).unwrap();
    let kinds: Vec<&str> = kinds.lines().collect();
    assert_eq!(kinds.first(), Some(&"none"), "{kinds:?}");
    for kind in kinds {
        let out = dir.path().join(format!("{kind}.svg"));
        let result =
            locus(&["pe", "show", "--kind", kind, "--len", "24", "--out", &out.display().to_string()]);
        if kind == "none" {
            assert!(String::from_utf8_lossy(&result.stderr).contains("no position signal to draw"));
            continue;
        }
        let title = expected.iter().find(|(name, _)| *name == kind).map(|(_, title)| *title);
        let title = title.unwrap_or_else(|| panic!("{kind}: no expected panel title listed here"));
        assert!(result.status.success(), "{kind}: {}", String::from_utf8_lossy(&result.stderr));
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg") && svg.contains(title), "{kind}: no panel titled {title:?}");
    }
    let png = dir.path().join("alibi.png");
    let result =
        locus(&["pe", "show", "--kind", "alibi", "--heads", "4", "--out", &png.display().to_string()]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn unusable_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.svg").display().to_string();
    let result = locus(&["pe", "show", "--kind", "rope", "--dim", "36", "--heads", "4", "--out", &out]);
    assert!(!result.status.success());
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(err.contains("head width d_model / n_heads (9) must be even"), "{err}");
    let result = locus(&[
        "pe",
        "show",
        "--kind",
        "sinusoidal",
        "--out",
        &dir.path().join("x.pdf").display().to_string(),
    ]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("x.pdf"));
}
