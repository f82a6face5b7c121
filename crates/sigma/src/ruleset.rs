//! A folder of rules, loaded in a stable order.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::rule::{Placeholders, Rule, RuleError};

/// A rule file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: RuleError,
}

/// The loaded rules, evaluated in load order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn from_rules(rules: Vec<Rule>) -> RuleSet {
        RuleSet { rules }
    }

    /// Loads every `*.yml` / `*.yaml` file under `path` (recursively, in byte order of the paths
    /// so that load order is the same on every machine), or the one file `path` names. A file that
    /// is not a usable rule is refused with its reason; only failing to read the folder or a file
    /// is an error.
    pub fn load_dir(path: &Path) -> io::Result<(RuleSet, Vec<Refusal>)> {
        RuleSet::load_dir_with(path, &Placeholders::new())
    }

    /// As [`RuleSet::load_dir`], with values for the `%name%` placeholders of `|expand` entries.
    pub fn load_dir_with(path: &Path, placeholders: &Placeholders) -> io::Result<(RuleSet, Vec<Refusal>)> {
        let mut files = Vec::new();
        if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            collect(path, &mut files)?;
            files.sort();
        }
        let mut rules = Vec::new();
        let mut refusals = Vec::new();
        for file in files {
            let bytes = std::fs::read(&file)?;
            let origin = file.display().to_string();
            let parsed = match String::from_utf8(bytes) {
                Ok(text) => Rule::parse_with(&text, &origin, placeholders),
                Err(_) => Err(RuleError::Invalid("the file is not UTF-8".to_owned())),
            };
            match parsed {
                Ok(rule) => rules.push(rule),
                Err(reason) => refusals.push(Refusal { path: file, reason }),
            }
        }
        Ok((RuleSet { rules }, refusals))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule matching the record, in load order.
    pub fn matching<'a>(&'a self, record: &'a Value) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |rule| rule.matches(record))
    }
}

fn collect(folder: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml") {
            files.push(path);
        }
    }
    Ok(())
}
