//! What makes `config apply` of a small change to a large file cost about what it costs
//! on a small file: the file is parsed one `[[target]]` section at a time and sections
//! whose text is unchanged since the last load or apply are not parsed again; a target
//! whose section is unchanged and that no request has changed since it was last put in
//! step is not read back or compared either.
//!
//! Splitting TOML text at header lines is only sound when no header-looking line can be
//! inside a value: multi-line strings (`"""`, `'''`) are the one place it can, so a file
//! with any is parsed whole. Anything unexpected (a section that does not parse alone,
//! or parses as other than one target, a check that fails) falls back to parsing the
//! whole file, so what is accepted and every message stay those of [`parse`].

use std::collections::HashMap;
use std::sync::Arc;

use super::{parse, Config, ConfigError, DaemonConfig, TargetConfig};

/// What `config apply` keeps between runs (one per registry).
#[derive(Default)]
pub struct ApplyCache {
    /// The text of each `[[target]]` section last parsed, and what it parsed to.
    sections: HashMap<String, Arc<TargetConfig>>,
    /// Targets known to be as their section says: tid -> (the parsed section they were
    /// put in step with, [`crate::Target::changed`] then).
    in_step: HashMap<u32, (Arc<TargetConfig>, u64)>,
    /// [`crate::Registry::global_changed`] when `in_step` was last filled.
    global: u64,
}

/// A file parsed for `apply`: the daemon settings and the targets.
pub struct Parsed {
    pub daemon: DaemonConfig,
    pub accounts: Vec<super::AccountConfig>,
    pub discovery: super::AuthConfig,
    pub targets: Vec<Arc<TargetConfig>>,
}

/// The top-level headers a section starts at.
fn header(line: &str) -> Option<bool> {
    if !line.trim_start().starts_with('[') {
        return None;
    }
    let l = line.split('#').next().unwrap_or("");
    let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
    match l.as_str() {
        "[[target]]" => Some(true),
        "[daemon]" | "[[account]]" | "[discovery]" => Some(false),
        _ => None,
    }
}

/// The file as (everything outside target sections, each target section's text), or
/// `None` when it can't be split soundly.
fn split(text: &str) -> Option<(String, Vec<&str>)> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let mut rest = String::new();
    let mut targets = Vec::new();
    // (start offset, is a target section)
    let mut cur = (0usize, false);
    let mut off = 0;
    let mut close = |start: usize, end: usize, is_target: bool| {
        if is_target {
            targets.push(&text[start..end]);
        } else {
            rest.push_str(&text[start..end]);
        }
    };
    for line in text.split_inclusive('\n') {
        if let Some(is_target) = header(line) {
            close(cur.0, off, cur.1);
            cur = (off, is_target);
        }
        off += line.len();
    }
    close(cur.0, text.len(), cur.1);
    Some((rest, targets))
}

/// Parses `text` for `apply`, reusing the sections cached from the last run.
pub fn parse_cached(cache: &mut ApplyCache, file: &str, text: &str) -> Result<Parsed, ConfigError> {
    if let Some(p) = try_sections(cache, file, text) {
        return Ok(p);
    }
    let cfg = parse(file, text)?;
    cache.sections.clear();
    Ok(Parsed {
        daemon: cfg.daemon,
        accounts: cfg.accounts,
        discovery: cfg.discovery,
        targets: cfg.targets.into_iter().map(Arc::new).collect(),
    })
}

fn try_sections(cache: &mut ApplyCache, file: &str, text: &str) -> Option<Parsed> {
    let (rest, sections) = split(text)?;
    let outside: Config = toml::from_str(&rest).ok()?;
    if !outside.targets.is_empty() {
        return None;
    }
    let mut fresh = HashMap::with_capacity(sections.len());
    let mut targets = Vec::with_capacity(sections.len());
    for s in sections {
        // The cached key moves over rather than being copied.
        let (key, t) = match cache.sections.remove_entry(s) {
            Some(kt) => kt,
            None => {
                let mut c: Config = toml::from_str(s).ok()?;
                if c.targets.len() != 1
                    || c.daemon != DaemonConfig::default()
                    || !c.accounts.is_empty()
                    || !c.discovery.is_empty()
                {
                    return None;
                }
                (s.to_string(), Arc::new(c.targets.pop()?))
            }
        };
        targets.push(t.clone());
        fresh.insert(key, t);
    }
    // Spans are relative to their sections here: a refusal is worded by `parse`.
    super::check_targets(targets.iter().map(|t| &**t), file, text).ok()?;
    cache.sections = fresh;
    Some(Parsed {
        daemon: outside.daemon,
        accounts: outside.accounts,
        discovery: outside.discovery,
        targets,
    })
}

/// Remembers the sections of a file loaded at start (`parse` already checked it).
pub fn remember_load(cache: &mut ApplyCache, reg: &crate::Registry, text: &str, cfg: &Config) {
    cache.sections.clear();
    cache.in_step.clear();
    let Some((_, sections)) = split(text) else {
        return;
    };
    if sections.len() != cfg.targets.len() {
        return;
    }
    let mut in_step = Vec::new();
    for (s, t) in sections.into_iter().zip(&cfg.targets) {
        let t = Arc::new(t.clone());
        cache.sections.insert(s.to_string(), t.clone());
        in_step.push(t);
    }
    note_in_step(cache, reg, &in_step);
}

impl ApplyCache {
    /// Whether the running target `tid` is known to be as `desired` says.
    pub fn in_step(
        &self,
        reg: &crate::Registry,
        t: &crate::Target,
        desired: &Arc<TargetConfig>,
    ) -> bool {
        self.global >= reg.global_changed()
            && self
                .in_step
                .get(&t.tid)
                .is_some_and(|(d, changed)| Arc::ptr_eq(d, desired) && *changed == t.changed())
    }

    pub fn forget_in_step(&mut self) {
        self.in_step.clear();
    }
}

/// Records that the running targets are now as `desired` says (after a successful
/// apply or load).
pub fn note_in_step(cache: &mut ApplyCache, reg: &crate::Registry, desired: &[Arc<TargetConfig>]) {
    cache.in_step.clear();
    cache.global = reg.global_changed();
    for d in desired {
        if let Some(t) = reg.target_by_tid(*d.tid.get_ref()) {
            if t.name.eq_ignore_ascii_case(&d.name) {
                cache.in_step.insert(t.tid, (d.clone(), t.changed()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_headers_only() {
        let text = "[daemon]\nportals = [\"127.0.0.1:3260\"]\n\n[[target]]\ntid = 1\n\
                    name = \"iqn.2026-11.a:b\"\n[[target.lun]]\nlun = 1\n  [[ target ]] # two\n\
                    tid = 2\nname = \"iqn.2026-11.a:c\"\n";
        let (rest, t) = split(text).unwrap();
        assert_eq!(rest, "[daemon]\nportals = [\"127.0.0.1:3260\"]\n\n");
        assert_eq!(t.len(), 2);
        assert!(t[0].starts_with("[[target]]") && t[0].ends_with("lun = 1\n"));
        assert!(t[1].starts_with("  [[ target ]]"));
        assert!(split("a = \"\"\"\n[[target]]\n\"\"\"\n").is_none());
    }

    #[test]
    fn sections_parse_as_the_whole_file_does() {
        let text = "[[target]]\ntid = 1\nname = \"iqn.2026-11.a:b\"\n\n[[target.lun]]\nlun = 1\n\
                    bstype = \"null\"\n\n[[target]]\ntid = 2\nname = \"iqn.2026-11.a:c\"\n";
        let mut cache = ApplyCache::default();
        let p = parse_cached(&mut cache, "f", text).unwrap();
        let whole = parse("f", text).unwrap();
        assert_eq!(p.targets.len(), 2);
        for (a, b) in p.targets.iter().zip(&whole.targets) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.luns.len(), b.luns.len());
        }
        // Unchanged sections are the very same parsed values the next time.
        let again = parse_cached(&mut cache, "f", &text.replace("tid = 2", "tid = 3")).unwrap();
        assert!(Arc::ptr_eq(&p.targets[0], &again.targets[0]));
        assert!(!Arc::ptr_eq(&p.targets[1], &again.targets[1]));
        // A duplicate tid across sections is refused with parse's message and line.
        let dup = text.replace("tid = 2", "tid = 1");
        let e = parse_cached(&mut cache, "f", &dup).err().unwrap();
        assert_eq!(e, parse("f", &dup).unwrap_err());
        assert!(e.0.starts_with("f:10:"), "{e}");
        // Something outside the sections that is not allowed is refused too.
        assert!(parse_cached(&mut cache, "f", &format!("bogus = 1\n{text}")).is_err());
        let inline = format!("target = [{{ tid = 5, name = \"iqn.2026-11.a:d\" }}]\n{text}");
        assert_eq!(
            parse_cached(&mut cache, "f", &inline).err(),
            parse("f", &inline).err()
        );
    }
}
