//! Pattern transforms (`metrics.all` / `metrics.for`), rendered with the templates of
//! [`crate::template`] (bounded in fuel and output there). Templates are compiled once;
//! renders are cached in a bounded map because the same values (IPs) come back again and
//! again.

use minijinja::Environment;

use crate::bounded::BoundedMap;
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
    pub(crate) fn new(cache_capacity: usize) -> Self {
        Templates {
            env: environment(),
            sources: Vec::new(),
            cache: BoundedMap::new(cache_capacity),
        }
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
        self.cache.insert(key, result.clone());
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
        let mut t = Templates::new(16);
        let id = t.add("{{ email.split('@') | last }}").unwrap();
        assert_eq!(
            t.render(id, "email", "bob@example.org").unwrap(),
            "example.org"
        );
    }

    #[test]
    fn no_html_escaping() {
        let mut t = Templates::new(16);
        let id = t.add("{{ ua }}").unwrap();
        assert_eq!(t.render(id, "ua", "<a&b>\"").unwrap(), "<a&b>\"");
    }

    #[test]
    fn syntax_error_reported() {
        let mut t = Templates::new(16);
        assert!(t.add("{% if %}").is_err());
    }

    #[test]
    fn runtime_error_is_an_error_not_a_drop() {
        let mut t = Templates::new(16);
        let id = t.add("{{ ip.nosuchmethod() }}").unwrap();
        assert!(t.render(id, "ip", "1.2.3.4").is_err());
        // cached result is the same
        assert!(t.render(id, "ip", "1.2.3.4").is_err());
    }

    #[test]
    fn same_source_same_id() {
        let mut t = Templates::new(16);
        assert_eq!(t.add("{{ a }}").unwrap(), t.add("{{ a }}").unwrap());
    }
}
