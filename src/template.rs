//! The template language of pattern transforms (`metrics.all` / `metrics.for`): Jinja2 as
//! minijinja implements it, with Python string methods (`{{ email.split('@') | last }}`)
//! through minijinja-contrib's pycompat. One environment for everyone: the configuration
//! checks a template's syntax with it when it is loaded, the labeller renders with it.

use minijinja::{Environment, UndefinedBehavior};

/// A new environment with the exporter's settings: Python methods, lenient undefined values
/// (an unknown name renders empty instead of failing).
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env
}

/// A template's compile error, for configuration errors.
pub(crate) fn check_syntax(source: &str) -> Result<(), String> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| format!("invalid template {source:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_reported() {
        assert!(check_syntax("{{ x | }}").is_err());
        assert!(check_syntax("{% if %}").is_err());
        assert!(check_syntax("{{ ip.split('.')[0] }}").is_ok());
    }
}
