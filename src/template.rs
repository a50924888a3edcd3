//! The template language of pattern transforms (`metrics.all` / `metrics.for`): Jinja2 as
//! minijinja implements it, with Python string methods (`{{ email.split('@') | last }}`)
//! through minijinja-contrib's pycompat. One environment for everyone: the configuration
//! checks a template when it is loaded, the labeller renders with it.
//!
//! Bounded: a render gets [`defaults::TEMPLATE_FUEL`] (minijinja's fuel: every instruction
//! and every byte a template creates or writes is charged, and an allocation is checked
//! before it is made, so the fuel bounds both the time and the memory of a render), and
//! its output is cut off past [`defaults::TEMPLATE_OUTPUT_MAX`] bytes (the render fails).
//! At load, [`check`] compiles a template and renders it with sample values: one that runs
//! out of fuel or writes too much there (`range(100000)` loops, `'x' * 100000000`) is
//! refused. One that does so only for some values fails at run time, which the labeller
//! counts (the raw value is kept).

use std::collections::BTreeMap;

use minijinja::{Environment, ErrorKind, Template, UndefinedBehavior};

use crate::defaults;

/// A new environment with the exporter's settings: Python methods, lenient undefined values
/// (an unknown name renders empty instead of failing), the fuel of one render.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(defaults::TEMPLATE_FUEL));
    env
}

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenderError {
    /// The fuel ran out: too much work or too much data.
    OutOfFuel,
    /// The output grew past [`defaults::TEMPLATE_OUTPUT_MAX`] bytes.
    TooLong,
    /// Any other error of the template (a method that does not exist, ...).
    Failed(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::OutOfFuel => write!(
                f,
                "the template ran out of fuel ({} units: too much work or data)",
                defaults::TEMPLATE_FUEL
            ),
            RenderError::TooLong => write!(
                f,
                "the output is longer than {} bytes",
                defaults::TEMPLATE_OUTPUT_MAX
            ),
            RenderError::Failed(e) => f.write_str(e),
        }
    }
}

/// An output that refuses to grow past a bound.
struct Capped {
    out: Vec<u8>,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > defaults::TEMPLATE_OUTPUT_MAX {
            self.full = true;
            return Err(std::io::Error::other("template output too long"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Render `template` with `context`, bounded (fuel, output length).
pub(crate) fn render(
    template: &Template<'_, '_>,
    context: BTreeMap<&str, &str>,
) -> Result<String, RenderError> {
    let mut out = Capped {
        out: Vec::new(),
        full: false,
    };
    let context: BTreeMap<String, minijinja::Value> = context
        .into_iter()
        .map(|(k, v)| (k.to_owned(), minijinja::Value::from(v)))
        .collect();
    match template.render_captured_to(context, &mut out) {
        Ok(_) => Ok(String::from_utf8_lossy(&out.out).into_owned()),
        Err(_) if out.full => Err(RenderError::TooLong),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(RenderError::OutOfFuel),
        Err(e) => Err(RenderError::Failed(e.to_string())),
    }
}

/// The values a template is tried with at load: a short one and a longer one, each bound
/// to every name the template uses but the environment's own (`range`): the pattern's name
/// is one of them.
const SAMPLES: [&str; 2] = ["203.0.113.7", LONG_SAMPLE];
const LONG_SAMPLE: &str = concat!(
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) ",
    "Chrome/124.0 Safari/537.36 user@example.org 2001:db8::1 ",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) ",
    "Chrome/124.0 Safari/537.36 user@example.org 2001:db8::1"
);

/// A template's compile error, or a render with sample values that ran out of fuel or
/// wrote too much: the message for the configuration error. Other render errors are not
/// refused (they may depend on the value: `{{ email.split('@')[1] }}` on a value without
/// `@`), they are counted when they happen.
pub(crate) fn check(source: &str) -> Result<(), String> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("invalid template {source:?}: {e}"))?;
    // The names the template uses, but for the environment's own (`range`, ...).
    let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let mut names = template.undeclared_variables(false);
    names.retain(|n| !globals.contains(&n.as_str()));
    for sample in SAMPLES {
        let context: BTreeMap<&str, &str> = names.iter().map(|n| (n.as_str(), sample)).collect();
        match render(&template, context) {
            Err(e @ (RenderError::OutOfFuel | RenderError::TooLong)) => {
                return Err(format!(
                    "template {source:?} is too costly: rendered with the value {sample:?}, {e}"
                ))
            }
            Ok(_) | Err(RenderError::Failed(_)) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_reported() {
        assert!(check("{{ x | }}").is_err());
        assert!(check("{% if %}").is_err());
        assert!(check("{{ ip.split('.')[0] }}").is_ok());
    }

    /// Guards issue 8: templates whose render cannot finish or is huge whatever the value
    /// are refused at load (they passed `test-config`, then hung the exporter or made
    /// 100 MB label values).
    #[test]
    fn costly_templates_are_refused_at_load() {
        let loops =
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        let e = check(loops).unwrap_err();
        assert!(e.contains("ran out of fuel"), "{e}");
        let e = check("{{ 'x' * 100000000 }}").unwrap_err();
        assert!(e.contains("too costly"), "{e}");
        let e = check("{{ ip * 1000 }}").unwrap_err();
        assert!(e.contains("too costly"), "{e}");
        // Ordinary transforms pass, and so do errors that depend on the value.
        for ok in [
            "{{ email.split('@') | last }}",
            "{{ ip.split('.')[:3] | join('.') }}.0/24",
            "{{ ua[:20] | lower }}",
            "{{ email.split('@')[1] }}",
            "{{ ip.nosuchmethod() }}",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn render_is_bounded_by_fuel_and_output() {
        let env = environment();
        let t = env.template_from_str("{{ v * 20 }}").unwrap();
        let long = "y".repeat(defaults::TEMPLATE_OUTPUT_MAX / 10);
        assert_eq!(
            render(&t, BTreeMap::from([("v", long.as_str())])),
            Err(RenderError::TooLong)
        );
        let t = env
            .template_from_str("{% for c in v %}{% for d in v %}{% endfor %}{% endfor %}")
            .unwrap();
        assert_eq!(
            render(&t, BTreeMap::from([("v", long.as_str())])),
            Err(RenderError::OutOfFuel)
        );
        let t = env.template_from_str("{{ v | upper }}").unwrap();
        assert_eq!(render(&t, BTreeMap::from([("v", "ab")])).unwrap(), "AB");
    }
}
