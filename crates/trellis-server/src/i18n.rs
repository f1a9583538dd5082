//! UI strings from Fluent message files, and locale-aware formatting.
//! Every string the UI shows comes from `locales/*.ftl`.

use std::collections::HashMap;
use std::sync::Arc;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use trellis_domain::{TzName, UtcMicros};

/// Languages shipped, with their message files.
pub const LOCALES: &[(&str, &str, &str)] = &[
    ("en", "English", include_str!("../locales/en.ftl")),
    ("de", "Deutsch", include_str!("../locales/de.ftl")),
];

#[derive(Clone)]
pub struct I18n {
    bundles: Arc<HashMap<&'static str, FluentBundle<FluentResource>>>,
}

impl I18n {
    /// Loads the embedded message files. A syntax error in them is a build defect,
    /// caught by this crate's tests.
    pub fn load() -> Result<Self, String> {
        let mut bundles = HashMap::new();
        for (code, _, src) in LOCALES {
            let res = FluentResource::try_new((*src).to_owned())
                .map_err(|(_, errs)| format!("{code}.ftl: {errs:?}"))?;
            let lang = code
                .parse()
                .map_err(|e| format!("{code}: bad language id: {e}"))?;
            let mut b = FluentBundle::new_concurrent(vec![lang]);
            // Isolation marks around arguments confuse copy-paste of passwords and ids.
            b.set_use_isolating(false);
            b.add_resource(res)
                .map_err(|errs| format!("{code}.ftl: {errs:?}"))?;
            bundles.insert(*code, b);
        }
        Ok(Self {
            bundles: Arc::new(bundles),
        })
    }

    fn bundle(&self, locale: &str) -> Option<&FluentBundle<FluentResource>> {
        self.bundles.get(locale).or_else(|| self.bundles.get("en"))
    }

    /// The message for `key`; the key itself if it is missing (visible in review, never a crash).
    pub fn t(&self, locale: &str, key: &str) -> String {
        self.t_args(locale, key, &[])
    }

    pub fn t_args(&self, locale: &str, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        let Some(bundle) = self.bundle(locale) else {
            return key.to_owned();
        };
        let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
            return key.to_owned();
        };
        let mut fa = FluentArgs::new();
        for (k, v) in args {
            fa.set(*k, v.clone());
        }
        let mut errors = vec![];
        bundle
            .format_pattern(pattern, Some(&fa), &mut errors)
            .into_owned()
    }

    pub fn has(&self, locale: &str, key: &str) -> bool {
        self.bundles.get(locale).is_some_and(|b| b.has_message(key))
    }
}

pub fn supported(locale: &str) -> &'static str {
    LOCALES
        .iter()
        .find(|(c, _, _)| *c == locale)
        .map_or("en", |(c, _, _)| c)
}

/// A time in the viewer's zone, formatted for their locale, with the zone named.
pub fn format_time(locale: &str, tz: &TzName, at: UtcMicros) -> String {
    let zoned = at.to_timestamp().to_zoned_datetime(tz.to_tz());
    let pattern = match locale {
        "de" => "%d.%m.%Y %H:%M:%S %Z",
        _ => "%Y-%m-%d %H:%M:%S %Z",
    };
    format!("{} ({})", zoned.strftime(pattern), tz.as_str())
}

/// An integer with the locale's digit grouping.
pub fn format_count(locale: &str, n: u64) -> String {
    let sep = if locale == "de" { '.' } else { ',' };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_exists_in_every_language() {
        let i = I18n::load().expect("message files parse");
        let keys: Vec<&str> = LOCALES[0]
            .2
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .filter(|k| !k.starts_with(' '))
            .collect();
        assert!(keys.len() > 50);
        for (code, _, _) in LOCALES {
            for k in &keys {
                assert!(i.has(code, k), "{code} lacks {k}");
            }
        }
    }

    #[test]
    fn plurals_and_formatting() {
        let i = I18n::load().expect("load");
        assert_eq!(
            i.t_args("en", "audit-count", &[("count", 1.into())]),
            "1 entry shown"
        );
        assert_eq!(
            i.t_args("de", "audit-count", &[("count", 3.into())]),
            "3 Einträge angezeigt"
        );
        assert_eq!(format_count("en", 1234567), "1,234,567");
        assert_eq!(format_count("de", 1234567), "1.234.567");
        let at = UtcMicros::from_timestamp("2026-07-01T10:00:00Z".parse().expect("ts"));
        let tz = TzName::parse("Europe/Berlin").expect("tz");
        assert_eq!(
            format_time("de", &tz, at),
            "01.07.2026 12:00:00 CEST (Europe/Berlin)"
        );
    }
}
