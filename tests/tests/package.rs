//! What `cargo xtask dist` ships: the systemd unit passes `systemd-analyze verify`, the
//! Debian package unpacks into a scratch root with everything in place, the man pages
//! agree with `--help`, and the completion scripts complete.
//!
//! The unit is read as systemd reads it and holds what the README says; the package's
//! maintainer scripts run for real on install, upgrade, removal and purge (in a scratch
//! root and a mount namespace of their own: needs root) and neither enable nor start
//! the service. The zsh and fish scripts pass their shells' syntax checks and offer, at
//! every command level, exactly the subcommands and every option `--help` lists.
//!
//! Apart from the maintainer scripts' test these run the binary and the tools
//! (`systemd-analyze`, `man`, `dpkg-deb`, `bash`, `zsh`, `fish`) only, so they need no
//! root. A missing tool or `BPFNET_DEB` fails them: nothing is skipped.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use bpfnet_tests::{daemon::bin, dpkg_root::DpkgRoot, require_root, unique, unit_file::UnitFile};

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
        let _unused: Result<_, _> = fs::remove_dir_all(&self.0);
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
/// `ExecStart`'s binary and the units it is ordered with inside the root, and the
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
/// `ExecStart` path and the man pages its Documentation= names.
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
}

/// What the README says of the unit, read as systemd reads it: `Type=notify` running
/// `/usr/bin/bpfnet daemon` with `BPFNET_LOG=info`, ordered `Before=docker.service` and
/// after the network is online, tied to Docker by nothing else, `Restart=on-failure`,
/// unlimited locked memory, wanted by `multi-user.target` once enabled.
fn assert_unit_as_documented(text: &str, what: &str) {
    let u = UnitFile::parse(text).unwrap_or_else(|e| panic!("{what} does not parse: {e}"));
    let has = |section: &str, key: &str, word: &str| u.list(section, key).contains(&word);
    assert_eq!(u.get("Service", "Type"), Some("notify"), "{what}: Type=");
    assert_eq!(
        u.get("Service", "ExecStart"),
        Some("/usr/bin/bpfnet daemon"),
        "{what}: ExecStart="
    );
    assert!(
        has("Service", "Environment", "BPFNET_LOG=info"),
        "{what}: Environment=BPFNET_LOG=info"
    );
    assert_eq!(
        u.get("Service", "Restart"),
        Some("on-failure"),
        "{what}: Restart="
    );
    assert_eq!(
        u.get("Service", "LimitMEMLOCK"),
        Some("infinity"),
        "{what}: LimitMEMLOCK="
    );
    assert!(
        has("Unit", "Before", "docker.service"),
        "{what}: Before=docker.service"
    );
    for key in ["After", "Wants"] {
        assert!(
            has("Unit", key, "network-online.target"),
            "{what}: {key}=network-online.target"
        );
    }
    for key in [
        "After",
        "Requires",
        "Requisite",
        "Wants",
        "BindsTo",
        "PartOf",
        "Upholds",
    ] {
        assert!(
            !has("Unit", key, "docker.service"),
            "{what}: {key}=docker.service ties bpfnet to Docker beyond ordering"
        );
    }
    assert_eq!(
        u.list("Install", "WantedBy"),
        ["multi-user.target"],
        "{what}: WantedBy="
    );
}

#[test]
fn the_unit_is_type_notify_before_docker_and_restarts_on_failure() {
    let text = fs::read_to_string(unit_source()).expect("packaging/bpfnet.service");
    assert_unit_as_documented(&text, "packaging/bpfnet.service");
}

/// The .deb (`BPFNET_DEB`) installed for real into a scratch root with its maintainer
/// scripts run (`dpkg_root`): installing neither enables nor starts the service (the
/// postinst ran, it recorded the link an `enable` would make, and made none; systemd's
/// only call is a daemon-reload); an upgrade restarts it only if running
/// (`try-restart`); removal stops it and masks it; purge leaves nothing.
#[test]
fn installing_the_package_neither_enables_nor_starts_the_service() {
    if !require_root() {
        return;
    }
    let deb = std::env::var("BPFNET_DEB").expect(
        "BPFNET_DEB is not set: run `cargo xtask dist` and set BPFNET_DEB to the .deb it \
         wrote (`cargo xtask test` does both)",
    );
    let r = DpkgRoot::new("dpkg");
    let systemd = "/etc/systemd/system";
    let run = |args: &[&str], what: &str| {
        let run = r.dpkg(args);
        assert!(run.success, "{what} fails: {}", run.output);
        assert!(
            run.host_writes.is_empty(),
            "{what} wrote into the host's systemd directories: {:?}",
            run.host_writes
        );
        assert!(
            !run.calls.iter().any(|c| {
                c.split_whitespace()
                    .any(|w| ["start", "restart", "enable", "reload-or-restart"].contains(&w))
            }),
            "{what} started or enabled the service: {:?}",
            run.calls
        );
        run
    };

    let install = run(&["-i", &deb], "installing");
    assert_eq!(
        r.status("bpfnet").as_deref(),
        Some("install ok installed"),
        "the postinst configured the package: {}",
        install.output
    );
    let unit = fs::read_to_string(r.at("/usr/lib/systemd/system/bpfnet.service"))
        .expect("the unit is installed");
    assert_unit_as_documented(&unit, "the installed unit");
    // deb-systemd-helper update-state (the postinst) records the links `enable` would
    // make, so that purge can remove them.
    let state = fs::read_to_string(
        r.at("/var/lib/systemd/deb-systemd-helper-enabled/bpfnet.service.dsh-also"),
    )
    .expect("the postinst ran deb-systemd-helper update-state");
    assert!(
        state.contains("/etc/systemd/system/multi-user.target.wants/bpfnet.service"),
        "the state names the link `enable` would make: {state:?}"
    );
    assert_eq!(
        r.list(systemd),
        Vec::<String>::new(),
        "installing made links in /etc/systemd/system"
    );
    assert_eq!(
        install.calls,
        ["systemctl --system daemon-reload"],
        "installing tells systemd of the unit and nothing else"
    );

    let upgrade = run(&["-i", &deb], "upgrading");
    assert!(
        upgrade
            .calls
            .contains(&"deb-systemd-invoke try-restart bpfnet.service".to_string()),
        "an upgrade restarts the service if it runs: {:?}",
        upgrade.calls
    );
    assert_eq!(
        r.list(systemd),
        Vec::<String>::new(),
        "upgrading enabled the service"
    );

    let remove = run(&["-r", "bpfnet"], "removing");
    assert!(
        remove
            .calls
            .contains(&"deb-systemd-invoke stop bpfnet.service".to_string()),
        "removal stops the service: {:?}",
        remove.calls
    );
    assert!(
        !r.at("/usr/bin/bpfnet").exists(),
        "removal removes the binary"
    );
    assert_eq!(
        fs::read_link(r.at("/etc/systemd/system/bpfnet.service")).ok(),
        Some(PathBuf::from("/dev/null")),
        "removal masks the unit until purge"
    );

    run(&["-P", "bpfnet"], "purging");
    assert_eq!(r.status("bpfnet"), None, "purge forgets the package");
    assert_eq!(
        r.list(systemd),
        Vec::<String>::new(),
        "purge leaves links or masks"
    );
    assert_eq!(
        r.list("/var/lib/systemd"),
        Vec::<String>::new(),
        "purge leaves deb-systemd-helper's state"
    );
}

/// The long option a zsh `_arguments` spec offers (`*--bridge=[...]:NAME:_default`,
/// `(-q --quiet)--verbose[...]`), if it is one.
fn zsh_long_option(spec: &str) -> Option<String> {
    let spec = spec.trim_start_matches('*');
    let spec = match spec.strip_prefix('(') {
        Some(rest) => rest.split_once(')')?.1,
        None => spec,
    };
    let name: String = spec
        .trim_start_matches('*')
        .chars()
        .take_while(|c| !"=[:+".contains(*c))
        .collect();
    name.starts_with("--").then_some(name)
}

/// What zsh's completion system gets from `_bpfnet` at command `path`: the subcommands
/// of its list (`_describe`'s entries, `name:description`) and the long options of its
/// `_arguments` specs. The script runs in zsh with `_arguments` and `_describe` stubbed
/// to print what they are given, walking down `path` as zsh's states would.
fn zsh_offers(script: &Path, path: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    const DRIVER: &str = r#"
compdef() { : }
source "$1"; shift
is-at-least() { return 0 }
_describe() { local c; for c in "${(@P)4}"; do print -r -- "CMD $c"; done }
typeset -a want states; want=("$@"); states=(bpfnet "$@")
integer calls=0
_arguments() {
  (( calls += 1 ))
  if (( calls == ${#want} + 1 )); then
    local a; for a in "$@"; do
      print -r -- "SPEC $a"
      if [[ $a == ':: :'* ]]; then ${a#:: :}; fi
    done
    state=; return 0
  fi
  state=$states[$calls]; line=("$want[$calls]"); return 0
}
_bpfnet
"#;
    let out = ok(Command::new("zsh")
        .args(["-f", "-c", DRIVER, "zsh"])
        .arg(script)
        .args(path));
    let subs = out
        .lines()
        .filter_map(|l| l.strip_prefix("CMD "))
        .filter_map(|l| l.split(':').next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect();
    let opts = out
        .lines()
        .filter_map(|l| l.strip_prefix("SPEC "))
        .filter_map(zsh_long_option)
        .collect();
    (subs, opts)
}

/// What fish completes after `bpfnet PATH ` (subcommands) and `bpfnet PATH --`
/// (long options), from the script sourced.
fn fish_offers(script: &Path, path: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let complete = |line: String| -> BTreeSet<String> {
        let call = format!(
            "source {}; complete -C {}",
            script.display(),
            shell_quote(&line)
        );
        ok(Command::new("fish").args(["--no-config", "-c", &call]))
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    };
    let prefix = std::iter::once("bpfnet".to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let subs = complete(format!("{prefix} "))
        .into_iter()
        .filter(|w| !w.starts_with('-') && w != "help")
        .collect();
    (subs, complete(format!("{prefix} --")))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `bpfnet completions zsh` and `fish` pass `zsh -n` and `fish --no-execute`; at every
/// command level (`bpfnet`, `bpfnet daemon`, `bpfnet cluster init`...) each offers
/// exactly the subcommands `--help` lists (the hidden `man` not among them) and every
/// long option it lists, as completion entries of their own.
#[test]
fn zsh_and_fish_completions_are_valid_and_offer_every_subcommand_and_option() {
    let dir = TempDir::new("cmpzf");
    let script = |shell: &str, file: &str| {
        let path = dir.0.join(file);
        fs::write(&path, ok(Command::new(bin()).args(["completions", shell])))
            .expect("write the script");
        path
    };
    let (zsh, fish) = (script("zsh", "_bpfnet"), script("fish", "bpfnet.fish"));
    ok(Command::new("zsh").args(["-f", "-n"]).arg(&zsh));
    ok(Command::new("fish").arg("--no-execute").arg(&fish));

    for (path, _) in command_paths(&bin()) {
        let words: Vec<&str> = path.iter().map(String::as_str).collect();
        let subs = help_subcommands(&bin(), &path);
        let opts = help_long_options(&bin(), &words);
        for (shell, (offered, offered_opts)) in [
            ("zsh", zsh_offers(&zsh, &path)),
            ("fish", fish_offers(&fish, &path)),
        ] {
            let at = std::iter::once("bpfnet")
                .chain(words.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            // A command without subcommands completes its arguments (files, values).
            assert!(
                offered == subs || (subs.is_empty() && shell == "fish"),
                "{shell}: `{at} <TAB>` should offer the subcommands of `{at} --help` \
                 {subs:?}, offers {offered:?}"
            );
            let missing: Vec<&String> =
                opts.iter().filter(|o| !offered_opts.contains(*o)).collect();
            assert!(
                missing.is_empty(),
                "{shell}: `{at} --<TAB>` does not offer {missing:?} (offers {offered_opts:?})"
            );
        }
    }
}
