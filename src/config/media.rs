//! `[media]`: the folder served at /media/, and who may see it.

use std::path::PathBuf;

use super::file::FileMedia;
use super::{defaults, CliOverrides};

#[derive(Debug, Clone)]
pub(crate) struct MediaConfig {
    pub dir: PathBuf,
    pub public: bool,
    pub listing: bool,
}

pub(super) fn resolve(m: &FileMedia, cli: &CliOverrides) -> MediaConfig {
    MediaConfig {
        dir: cli
            .media
            .clone()
            .or(m.dir.clone())
            .unwrap_or_else(|| PathBuf::from(defaults::MEDIA_DIR)),
        public: m.public.unwrap_or(defaults::MEDIA_PUBLIC),
        listing: m.listing.unwrap_or(defaults::MEDIA_LISTING),
    }
}
