//! Pattern transforms (`metrics.all` / `metrics.for`), rendered with the templates of
//! [`crate::template`] (bounded in fuel and output there). Templates are compiled once;
//! renders are cached in a bounded map because the same values (IPs) come back again and
//! again: at most a number of renders and a number of bytes (each render weighs its input
//! and its output), so that long values cannot make the cache large.

use minijinja::Environment;

use crate::bounded::{BoundedMap, Evicted};
use crate::template::{environment, render};

/// Identifies a compiled template inside [`Templates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TemplateId(u32);

/// Compiled templates and the cache of their renders.
pub(crate) struct Templates {
    env: Environment<'static>,
    sources: Vec<String>,
    cache: BoundedMap<(TemplateId, String), Result<String, String>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("sources", &self.sources)
            .finish()
    }
}

impl Templates {
    /// Renders cached: at most `cache_capacity` of them, whose inputs and outputs add up to
    /// at most `cache_bytes`.
    pub(crate) fn new(cache_capacity: usize, cache_bytes: usize) -> Self {
        Templates {
            env: environment(),
            sources: Vec::new(),
            cache: BoundedMap::with_budget(cache_capacity, cache_bytes),
        }
    }

    /// Renders dropped from the cache since the last call, by the bound that was reached.
    pub(crate) fn take_evicted(&mut self) -> Evicted {
        self.cache.take_evicted()
    }

    /// Compile a template (the same source twice gives the same id).
    pub(crate) fn add(&mut self, source: &str) -> Result<TemplateId, String> {
        if let Some(i) = self.sources.iter().position(|s| s == source) {
            return Ok(TemplateId(i as u32));
        }
        let id = TemplateId(self.sources.len() as u32);
        self.env
            .add_template_owned(id.name(), source.to_string())
            .map_err(|e| format!("invalid template {source:?}: {e}"))?;
        self.sources.push(source.to_string());
        Ok(id)
    }

    /// Render `template` with `value` bound to `pattern`. Err carries the error message;
    /// the caller keeps the raw value and counts it.
    pub(crate) fn render(
        &mut self,
        template: TemplateId,
        pattern: &str,
        value: &str,
    ) -> Result<String, String> {
        let key = (template, value.to_string());
        if let Some(r) = self.cache.get(&key) {
            return r.clone();
        }
        let result = match self.env.get_template(&template.name()) {
            Ok(t) => render(&t, std::collections::BTreeMap::from([(pattern, value)]))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
        .map_err(|msg| match self.sources.get(template.0 as usize) {
            Some(src) => format!("template {src:?}: {msg}"),
            None => msg,
        });
        let weight = key.1.len()
            + match &result {
                Ok(s) | Err(s) => s.len(),
            };
        let hash = self.cache.hash(&key);
        self.cache.insert_hashed(hash, key, result.clone(), weight);
        result
    }
}

impl TemplateId {
    fn name(self) -> String {
        format!("t{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_split_and_last_filter() {
        let mut t = Templates::new(16, 1 << 20);
        let id = t.add("{{ email.split('@') | last }}").unwrap();
        assert_eq!(
            t.render(id, "email", "bob@example.org").unwrap(),
            "example.org"
        );
    }

    #[test]
    fn no_html_escaping() {
        let mut t = Templates::new(16, 1 << 20);
        let id = t.add("{{ ua }}").unwrap();
        assert_eq!(t.render(id, "ua", "<a&b>\"").unwrap(), "<a&b>\"");
    }

    #[test]
    fn syntax_error_reported() {
        let mut t = Templates::new(16, 1 << 20);
        assert!(t.add("{% if %}").is_err());
    }

    #[test]
    fn runtime_error_is_an_error_not_a_drop() {
        let mut t = Templates::new(16, 1 << 20);
        let id = t.add("{{ ip.nosuchmethod() }}").unwrap();
        assert!(t.render(id, "ip", "1.2.3.4").is_err());
        // cached result is the same
        assert!(t.render(id, "ip", "1.2.3.4").is_err());
    }

    /// Guards the cache's byte budget (issue 8): renders of long values are dropped by
    /// bytes, not kept for 16,384 entries.
    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let mut t = Templates::new(16_384, 1 << 20);
        let id = t.add("{{ ua }}").unwrap();
        let long = "x".repeat(60 * 1024);
        for i in 0..100 {
            let v = format!("{long}{i}");
            assert_eq!(t.render(id, "ua", &v).unwrap(), v);
        }
        let kept: usize = t.cache.young_values().chain(t.cache.old_values()).count();
        // Each render weighs 2 × 60 KiB: at most 1 MiB of them.
        assert!(kept <= 8, "{kept} renders kept");
        let evicted = t.take_evicted();
        assert!(evicted.bytes > 80 && evicted.entries == 0, "{evicted:?}");
    }

    #[test]
    fn same_source_same_id() {
        let mut t = Templates::new(16, 1 << 20);
        assert_eq!(t.add("{{ a }}").unwrap(), t.add("{{ a }}").unwrap());
    }
}
