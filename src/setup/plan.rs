//! The changes setup and uninstall make, as a list of steps: each is printed (`--dry-run` stops
//! there) and then applied, and a step that finds its work already done says so and changes
//! nothing, which is what makes a second run safe.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Who owns a file or folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Root,
    /// The `hermes-edge` system user (looked up when the step is applied: setup creates it).
    Service,
    /// Kept as found (a file of Hermes').
    Ids(u32, u32),
}

/// What to do when the file already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Write ours when it differs (files setup owns: the unit, the binary).
    Replace,
    /// Leave it as it is (the operator's config: setup never overwrites an edit).
    Keep,
}

#[derive(Debug)]
pub(crate) enum Step {
    Dir {
        path: PathBuf,
        mode: u32,
        owner: Owner,
        /// When the folder's owner is not `owner`, everything in it is given to `owner` too: the
        /// data an earlier install left (uninstall keeps it; the user made again may have
        /// another uid).
        recursive: bool,
    },
    File {
        path: PathBuf,
        mode: u32,
        owner: Owner,
        contents: Vec<u8>,
        existing: Existing,
        /// Never printed (keys); the dry run shows the names only.
        secret: bool,
        what: &'static str,
    },
    Remove {
        path: PathBuf,
        what: &'static str,
    },
    /// Removes the lines that start with `prefix` (a user's line in a passwd-style file).
    DropLines {
        path: PathBuf,
        prefix: String,
        what: &'static str,
    },
    Run {
        argv: Vec<String>,
        why: String,
        /// A failure is said and the next steps still run (stopping a service that is not
        /// running must not keep uninstall from removing it).
        may_fail: bool,
    },
}

/// What applying a step did, for the summary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Changed,
    Unchanged,
    /// An existing file setup does not overwrite.
    Kept,
}

/// Resolves [`Owner::Service`] to ids; `None` when the user does not exist (yet).
pub(crate) type ServiceIds<'a> = &'a dyn Fn() -> Option<(u32, u32)>;

fn owner_text(owner: Owner) -> String {
    match owner {
        Owner::Root => "root".into(),
        Owner::Service => super::SERVICE_USER.into(),
        Owner::Ids(u, g) => format!("{u}:{g} (kept)"),
    }
}

impl Step {
    /// One line (more for a file whose contents are shown) saying what the step would do.
    pub(crate) fn describe(&self) -> String {
        match self {
            Step::Dir {
                path, mode, owner, ..
            } => format!(
                "folder {} (mode {mode:04o}, owner {})",
                path.display(),
                owner_text(*owner)
            ),
            Step::File {
                path,
                mode,
                owner,
                contents,
                existing,
                secret,
                what,
            } => {
                let keep = match existing {
                    Existing::Keep => ", kept if it exists",
                    Existing::Replace => "",
                };
                let mut s = format!(
                    "file {} — {what} (mode {mode:04o}, owner {}{keep})",
                    path.display(),
                    owner_text(*owner)
                );
                if !*secret {
                    if let Ok(text) = std::str::from_utf8(contents) {
                        for line in text.lines() {
                            s.push_str("\n      | ");
                            s.push_str(line);
                        }
                    } else {
                        s.push_str(&format!(" ({} bytes)", contents.len()));
                    }
                }
                s
            }
            Step::Remove { path, what } => format!("remove {} — {what}", path.display()),
            Step::DropLines { path, prefix, what } => {
                format!("remove the `{prefix}…` line of {} — {what}", path.display())
            }
            Step::Run { argv, why, .. } => format!("run `{}` — {why}", argv.join(" ")),
        }
    }

    /// Applies the step; `Unchanged` when it found its work done.
    pub(crate) fn apply(&self, service: ServiceIds<'_>) -> Result<Outcome, String> {
        match self {
            Step::Dir {
                path,
                mode,
                owner,
                recursive,
            } => {
                let existed = path.is_dir();
                if !existed {
                    std::fs::create_dir_all(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                }
                if *recursive && existed {
                    let (uid, gid) = ids(*owner, service)?;
                    let meta =
                        std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                    if (meta.uid(), meta.gid()) != (uid, gid) {
                        chown_tree(path, uid, gid)?;
                    }
                }
                let changed = fix_mode_owner(path, *mode, *owner, service)?;
                Ok(if existed && !changed {
                    Outcome::Unchanged
                } else {
                    Outcome::Changed
                })
            }
            Step::File {
                path,
                mode,
                owner,
                contents,
                existing,
                ..
            } => {
                if path.exists() {
                    if *existing == Existing::Keep {
                        return Ok(Outcome::Kept);
                    }
                    let same = std::fs::read(path).is_ok_and(|old| old == *contents);
                    if same {
                        let changed = fix_mode_owner(path, *mode, *owner, service)?;
                        return Ok(if changed {
                            Outcome::Changed
                        } else {
                            Outcome::Unchanged
                        });
                    }
                }
                write_atomic(path, contents, *mode, ids(*owner, service)?)?;
                Ok(Outcome::Changed)
            }
            Step::Remove { path, .. } => {
                let meta = match std::fs::symlink_metadata(path) {
                    Ok(m) => m,
                    Err(_) => return Ok(Outcome::Unchanged),
                };
                let r = if meta.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                };
                r.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                Ok(Outcome::Changed)
            }
            Step::DropLines { path, prefix, .. } => {
                let Ok(text) = std::fs::read_to_string(path) else {
                    return Ok(Outcome::Unchanged);
                };
                let kept: String = text
                    .split_inclusive('\n')
                    .filter(|l| !l.starts_with(prefix.as_str()))
                    .collect();
                if kept == text {
                    return Ok(Outcome::Unchanged);
                }
                let meta =
                    std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
                write_atomic(
                    path,
                    kept.as_bytes(),
                    meta.mode() & 0o7777,
                    (meta.uid(), meta.gid()),
                )?;
                Ok(Outcome::Changed)
            }
            Step::Run { argv, may_fail, .. } => match run(argv) {
                Ok(()) => Ok(Outcome::Changed),
                Err(e) if *may_fail => {
                    println!("  warning: {e}; going on");
                    Ok(Outcome::Unchanged)
                }
                Err(e) => Err(e),
            },
        }
    }
}

/// Gives `dir` and everything under it to `uid:gid`, links themselves not followed.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    // Bounded by the tree itself; a symlink is changed, never followed (lchown, no descent).
    let mut pending = vec![dir.to_path_buf()];
    while let Some(p) = pending.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(|e| format!("cannot change the owner of {}: {e}", p.display()))?;
        let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        if is_dir {
            let entries = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            pending.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

fn ids(owner: Owner, service: ServiceIds<'_>) -> Result<(u32, u32), String> {
    match owner {
        Owner::Root => Ok((0, 0)),
        Owner::Ids(u, g) => Ok((u, g)),
        Owner::Service => service().ok_or_else(|| {
            format!(
                "the user `{}` does not exist; it should have been created by the step before",
                super::SERVICE_USER
            )
        }),
    }
}

/// Sets mode and owner when they differ; whether anything changed.
fn fix_mode_owner(
    path: &Path,
    mode: u32,
    owner: Owner,
    service: ServiceIds<'_>,
) -> Result<bool, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (uid, gid) = ids(owner, service)?;
    let mut changed = false;
    if (meta.uid(), meta.gid()) != (uid, gid) {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("cannot change the owner of {}: {e}", path.display()))?;
        changed = true;
    }
    if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
        changed = true;
    }
    Ok(changed)
}

/// Writes a temporary file beside `path` with its mode and owner set before any byte is written,
/// then renames it over `path`: a reader sees the old file or the new one, never half of one, a
/// key is never readable by others for a moment, and a running binary can be replaced.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    (uid, gid): (u32, u32),
) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no folder", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.hermes-edge-{}", std::process::id()));
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Runs a command, its output passed through; an error names it and its exit status.
pub(crate) fn run(argv: &[String]) -> Result<(), String> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| "internal: empty command".to_string())?;
    let status = Command::new(prog)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
    if !status.success() {
        return Err(format!("`{}` failed ({status})", argv.join(" ")));
    }
    Ok(())
}

/// Prints the steps (a dry run), or applies them one by one, printing what each did; stops at the
/// first error, which names the step (the steps before it stay done: running again finishes).
pub(crate) fn execute(
    steps: &[Step],
    dry_run: bool,
    service: ServiceIds<'_>,
) -> Result<bool, String> {
    let mut any = false;
    for step in steps {
        if dry_run {
            println!("  would {}", step.describe());
            continue;
        }
        let outcome = step.apply(service)?;
        let head = step.describe();
        let head = head.lines().next().unwrap_or_default();
        match outcome {
            Outcome::Changed => {
                any = true;
                println!("  done: {head}");
            }
            Outcome::Unchanged => println!("  left alone (already so): {head}"),
            Outcome::Kept => println!("  left alone (exists, kept as it is): {head}"),
        }
    }
    Ok(any)
}
