//! What `cargo xtask dist` ships: the systemd unit passes `systemd-analyze verify`, the
//! Debian package unpacks into a scratch root with everything in place, the man pages
//! agree with `--help`, and the completion scripts complete.
//!
//! These run the binary and the tools (`systemd-analyze`, `man`, `dpkg-deb`, `bash`) only,
//! so they need no root. A missing tool or `BPFNET_DEB` fails them: nothing is skipped.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use bpfnet_tests::{daemon::bin, unique};

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run `c` and require success; its stdout.
fn ok(c: &mut Command) -> String {
    let out: Output = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?} (is it installed? `cargo xtask setup`): {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's unit.
fn unit_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/bpfnet.service")
}

/// The subcommands `bin PATH... --help` lists under "Commands:", without clap's own
/// `help` (which has no page).
fn help_subcommands(bin: &Path, path: &[String]) -> BTreeSet<String> {
    let help = ok(Command::new(bin).args(path).arg("--help"));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path with its page name: `[]` is `bpfnet`, `["cluster", "init"]` is
/// `bpfnet-cluster-init`, as `--help` lists them, nested ones included.
fn command_paths(bin: &Path) -> Vec<(Vec<String>, String)> {
    let mut all = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        for sub in help_subcommands(bin, &path) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        let page = std::iter::once("bpfnet".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        all.push((path, page));
    }
    all
}

/// `man -l FILE` as plain text: no hyphenation, no justification, long lines, so every
/// name and option reads as one word.
fn render(page: &Path) -> String {
    ok(Command::new("man")
        .args(["--nh", "--nj", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "400"))
}

/// The lines of `section` (e.g. "SUBCOMMANDS") of a rendered page.
fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| *l != name)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// Whether `text` has the option `opt` (`--pin-dir`) as a whole word.
fn mentions(text: &str, opt: &str) -> bool {
    text.match_indices(opt).any(|(i, _)| {
        let after = text[i + opt.len()..].chars().next();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// The long options `bin PATH... --help` lists (`--bridge`, `--xdp`, `--help`).
fn help_long_options(bin: &Path, path: &[&str]) -> BTreeSet<String> {
    let help = ok(Command::new(bin).args(path).arg("--help"));
    help.lines()
        .skip_while(|l| *l != "Options:")
        .skip(1)
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| {
            l.split_whitespace().find(|w| w.starts_with("--")).map(|w| {
                w.split(['[', '=', '<', ','])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect()
}

/// `systemd-analyze verify` of the unit installed under `root` (the manager resolves
/// ExecStart's binary and the units it is ordered with inside the root, and the
/// Documentation= pages through `man` with the root's pages).
fn verify_unit(root: &Path) {
    let units = root.join("usr/lib/systemd/system");
    // The units it names (sysinit.target, network-online.target...) are the host's;
    // `-n` keeps the unit under test.
    ok(Command::new("cp")
        .arg("-an")
        .arg("/usr/lib/systemd/system/.")
        .arg(&units));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("bpfnet.service")
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("systemd-analyze runs (package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("bpfnet"),
        "systemd-analyze verify should accept the unit ({}): {stderr}",
        out.status
    );
}

/// The repository's unit, installed in a scratch root with the binary under test at its
/// ExecStart path and the man pages its Documentation= names.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let root = TempDir::new("unit");
    let units = root.0.join("usr/lib/systemd/system");
    let usr_bin = root.0.join("usr/bin");
    for dir in [&units, &usr_bin] {
        fs::create_dir_all(dir).expect("scratch root directories");
    }
    fs::copy(unit_source(), units.join("bpfnet.service")).expect("copy the unit");
    fs::copy(bin(), usr_bin.join("bpfnet")).expect("copy the binary");
    ok(Command::new(bin())
        .arg("man")
        .arg(root.0.join("usr/share/man/man1")));
    verify_unit(&root.0);
}

/// `cargo xtask dist`'s package (`BPFNET_DEB`, set by `cargo xtask test`) unpacked into a
/// scratch root: binary, unit, completions and a man page per command, each in the
/// place Debian looks; the binary runs and reports the package's version.
#[test]
fn the_package_installs_binary_unit_completions_and_man_pages() {
    let deb = std::env::var_os("BPFNET_DEB").map(PathBuf::from).expect(
        "BPFNET_DEB is not set: run `cargo xtask dist` and set BPFNET_DEB to the .deb it \
         wrote (`cargo xtask test` does both)",
    );
    assert!(deb.is_file(), "BPFNET_DEB={} is not a file", deb.display());
    let root = TempDir::new("deb");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root.0));
    let at = |p: &str| root.0.join(p);

    let installed = at("usr/bin/bpfnet");
    let mode = fs::metadata(&installed)
        .unwrap_or_else(|e| panic!("{}: {e}", installed.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "/usr/bin/bpfnet is rwxr-xr-x");
    let version = ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"));
    let upstream = version.trim().split('-').next().unwrap_or_default();
    assert_eq!(
        ok(Command::new(&installed).arg("--version")).trim(),
        format!("bpfnet {upstream}"),
        "the installed binary runs and is the package's version"
    );

    let unit = fs::read_to_string(at("usr/lib/systemd/system/bpfnet.service"))
        .expect("the unit is installed in /usr/lib/systemd/system");
    assert_eq!(
        unit,
        fs::read_to_string(unit_source()).expect("packaging/bpfnet.service"),
        "the package ships the repository's unit unchanged"
    );

    for (shell, file) in [
        ("bash", "usr/share/bash-completion/completions/bpfnet"),
        ("zsh", "usr/share/zsh/vendor-completions/_bpfnet"),
        ("fish", "usr/share/fish/vendor_completions.d/bpfnet.fish"),
    ] {
        let shipped = fs::read_to_string(at(file))
            .unwrap_or_else(|e| panic!("{shell} completions at /{file}: {e}"));
        assert_eq!(
            shipped,
            ok(Command::new(&installed).args(["completions", shell])),
            "/{file} is the installed binary's own {shell} script"
        );
    }

    let man1 = at("usr/share/man/man1");
    for (path, page) in command_paths(&installed) {
        let file = man1.join(format!("{page}.1.gz"));
        assert!(
            file.is_file(),
            "`bpfnet {}` has no man page /usr/share/man/man1/{page}.1.gz",
            path.join(" ")
        );
        let text = render(&file);
        assert!(
            section(&text, "NAME")
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{page} - "))),
            "{page}.1.gz renders with its NAME:\n{text}"
        );
    }
    // The installed unit again: ExecStart and Documentation= resolve in the package.
    verify_unit(&root.0);
}

/// Every subcommand `--help` lists has its entry in the man page, and every entry is a
/// subcommand `--help` lists, at every level (`bpfnet`, `bpfnet cluster`...).
#[test]
fn help_and_man_pages_list_the_same_subcommands() {
    let dir = TempDir::new("man");
    ok(Command::new(bin()).arg("man").arg(&dir.0));
    for (path, page) in command_paths(&bin()) {
        let help = help_subcommands(&bin(), &path);
        let text = render(&dir.0.join(format!("{page}.1")));
        let listed: BTreeSet<String> = section(&text, "SUBCOMMANDS")
            .iter()
            .filter_map(|l| l.trim().strip_suffix("(1)"))
            .filter_map(|l| l.strip_prefix(&format!("{page}-")))
            .map(str::to_string)
            .collect();
        assert_eq!(
            listed,
            help,
            "`man {page}` lists other subcommands than `bpfnet {} --help`",
            path.join(" ")
        );
    }
    assert!(
        !dir.0.join("bpfnet-man.1").exists(),
        "the hidden `man` command gets no page"
    );
}

/// Every long option of `bpfnet daemon --help` is documented in `man bpfnet-daemon`'s
/// OPTIONS.
#[test]
fn man_bpfnet_daemon_documents_every_option() {
    let dir = TempDir::new("mand");
    ok(Command::new(bin()).arg("man").arg(&dir.0));
    let text = render(&dir.0.join("bpfnet-daemon.1"));
    let options = section(&text, "OPTIONS").join("\n");
    let help = help_long_options(&bin(), &["daemon"]);
    assert!(
        help.contains("--pin-dir") && help.contains("--xdp"),
        "daemon --help should list --pin-dir and --xdp, read {help:?}"
    );
    let missing: Vec<&String> = help.iter().filter(|o| !mentions(&options, o)).collect();
    assert!(
        missing.is_empty(),
        "man bpfnet-daemon does not document {missing:?}:\n{options}"
    );
}

/// `bpfnet completions bash` is valid bash, and completing it offers exactly the
/// subcommands `--help` lists (the hidden `man` not among them) and the daemon's options.
#[test]
fn bash_completion_is_valid_and_completes_the_subcommands() {
    let dir = TempDir::new("cmp");
    let script = dir.0.join("bpfnet.bash");
    fs::write(
        &script,
        ok(Command::new(bin()).args(["completions", "bash"])),
    )
    .expect("write the script");
    ok(Command::new("bash").arg("-n").arg(&script));

    // What bash's programmable completion would call for `bpfnet <TAB>` and
    // `bpfnet daemon --<TAB>`.
    let complete = |words: &str, cword: usize, cur: &str, prev: &str| -> BTreeSet<String> {
        let call = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _bpfnet bpfnet '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        ok(Command::new("bash").arg("-c").arg(call))
            .lines()
            .map(str::to_string)
            .collect()
    };
    let offered: BTreeSet<String> = complete("bpfnet ''", 1, "", "bpfnet")
        .into_iter()
        .filter(|w| !w.starts_with('-') && w != "help")
        .collect();
    assert_eq!(
        offered,
        help_subcommands(&bin(), &[]),
        "`bpfnet <TAB>` should offer the subcommands of `bpfnet --help`"
    );
    let offered = complete("bpfnet daemon --", 2, "--", "daemon");
    let missing: Vec<String> = help_long_options(&bin(), &["daemon"])
        .into_iter()
        .filter(|o| !offered.contains(o))
        .collect();
    assert!(
        missing.is_empty(),
        "`bpfnet daemon --<TAB>` does not offer {missing:?}"
    );

    for shell in ["zsh", "fish"] {
        let script = ok(Command::new(bin()).args(["completions", shell]));
        for sub in help_subcommands(&bin(), &[]) {
            assert!(
                script.contains(&sub),
                "the {shell} script does not name `{sub}`"
            );
        }
    }
}
