use super::*;

fn errors(text: &str) -> Vec<String> {
    match parse_rule_file(text, &ParseOptions::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn probe() {
    for f in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
        let t = std::fs::read_to_string(format!("/tmp/rt/{f}.yml")).unwrap();
        println!("=== {f}\n{}", errors(&t).join("\n"));
    }
}
