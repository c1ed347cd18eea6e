//! The README's config examples are configs: every ```toml block that
//! writes an agent with a `command` (not a fleet file) reads as a whole
//! file, and the copies of its `instances` example are what it says.

use std::path::Path;

use super::parse;
use crate::name::AgentName;

const README: &str = include_str!("../../../../README.md");

fn blocks() -> Vec<&'static str> {
    README
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect()
}

#[test]
fn every_agent_example_in_the_readme_parses() {
    let examples: Vec<&str> = blocks()
        .into_iter()
        .filter(|block| {
            block.contains("[agents.") && block.contains("command") && !block.contains("[fleet]")
        })
        .collect();
    assert!(examples.len() >= 5, "{} examples", examples.len());
    for block in examples {
        if let Err(error) = parse("README.md", block, Path::new("/srv/app")) {
            panic!("a README example does not parse:\n{error}\n---\n{block}");
        }
    }
}

#[test]
fn the_readme_instances_example_makes_the_copies_it_says() {
    let block = blocks()
        .into_iter()
        .find(|block| block.contains("[agents.worker]\ninstances = 3"))
        .expect("the instances example");
    let config = parse("README.md", block, Path::new("/srv/app")).expect("valid");
    for (number, port) in [(1, "8010"), (2, "8020"), (3, "8030")] {
        let spec = &config.agents[&AgentName::new(&format!("worker.{number}")).expect("name")];
        assert_eq!(spec.env["PORT"], port);
    }
}
