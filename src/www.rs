//! The site's own files (login page, chat page, scripts, styles, vendored libraries): embedded in
//! the binary so one file is a complete install; `--www DIR` on disk overrides them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use include_dir::{include_dir, Dir};

// build.rs copies www/ here, adding gzip siblings of the text files.
static EMBEDDED: Dir<'static> = include_dir!("$OUT_DIR/www");

pub(crate) struct Www {
    dir: Option<PathBuf>,
    /// Small files of `dir` kept in memory (see `static_files::SmallFiles`).
    pub small_files: crate::static_files::SmallFiles,
}

impl Www {
    pub(crate) fn new(dir: Option<PathBuf>) -> Www {
        Www {
            small_files: crate::static_files::SmallFiles::new(dir.as_deref()),
            dir,
        }
    }

    /// The folder given with `--www`, whose files replace the embedded ones.
    pub(crate) fn disk_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// An embedded file with its validator, by its path relative to `www/`. The caller has checked
    /// the path (see `parse_rel` in `static_files/path.rs`).
    pub(crate) fn embedded(&self, rel: &str) -> Option<SiteFile> {
        let file = EMBEDDED.get_file(rel)?;
        let etag = embedded_etags().get(rel)?;
        Some(SiteFile {
            contents: file.contents(),
            etag,
        })
    }
}

/// An embedded site file: its bytes and an entity tag derived from them.
pub(crate) struct SiteFile {
    pub contents: &'static [u8],
    /// Opaque tag (without quotes): the first 128 bits of the SHA-256 of the contents. Embedded
    /// files have no modification time, so the content hash is the only validator; it is the same
    /// for every build of the same bytes.
    pub etag: &'static str,
}

/// Entity tags of every embedded file, computed once on first use (a few milliseconds for the
/// whole site).
fn embedded_etags() -> &'static HashMap<String, String> {
    static ETAGS: OnceLock<HashMap<String, String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        let mut tags = HashMap::new();
        collect_etags(&EMBEDDED, &mut tags);
        tags
    })
}

fn collect_etags(dir: &'static Dir<'static>, tags: &mut HashMap<String, String>) {
    use sha2::{Digest, Sha256};
    for file in dir.files() {
        let digest = Sha256::digest(file.contents());
        let tag = hex::encode(&digest[..16]);
        tags.insert(file.path().to_string_lossy().into_owned(), tag);
    }
    for sub in dir.dirs() {
        collect_etags(sub, tags);
    }
}
