//! The site's own files (login page, chat page, scripts, styles, vendored libraries): embedded in
//! the binary so one file is a complete install; `--www DIR` on disk overrides them.

use std::borrow::Cow;
use std::path::PathBuf;

use include_dir::{include_dir, Dir};

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/www");

pub struct Www {
    dir: Option<PathBuf>,
}

impl Www {
    pub fn new(dir: Option<PathBuf>) -> Www {
        Www { dir }
    }

    /// The bytes of a site file by its path relative to `www/` (`index.html`, `vendor/x.js`).
    /// Paths with `..`, backslashes, NUL or hidden parts are refused.
    pub fn get(&self, rel: &str) -> Option<Cow<'static, [u8]>> {
        if rel.is_empty()
            || rel.contains('\\')
            || rel.contains('\0')
            || rel.split('/').any(|p| p.is_empty() || p.starts_with('.'))
        {
            return None;
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(rel);
            return match std::fs::read(&path) {
                Ok(bytes) => Some(Cow::Owned(bytes)),
                Err(_) => None,
            };
        }
        EMBEDDED.get_file(rel).map(|f| Cow::Borrowed(f.contents()))
    }
}
