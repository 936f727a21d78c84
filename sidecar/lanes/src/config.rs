//! Layered TOML configuration (DESIGN.md §10): the commented default compiled in from templates/, then the
//! user file, the repository's `.lanes.toml`, the repository-local file under the git common dir, and
//! `LANES_*` variables. Unknown keys are reported, not fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lanes_core::{Contention, Latent, Policy, parse_ttl};
use lanes_proto::lifecycle::SETTING_VARS;
use lanes_store::Durability;

/// The commented default configuration, also written by `lanes init`.
pub const TEMPLATE: &str = include_str!("../../../templates/config.toml");

/// The default configuration with every setting commented out, as `lanes init` writes the repository-local
/// file: it documents each key without pinning it above `.lanes.toml` and the user's file.
pub fn commented_template() -> String {
    let mut text = String::from(
        "# Repository-local lanes settings (not committed). Every line is commented: uncomment what you change\n\
         # here; .lanes.toml and ~/.config/lanes/config.toml apply to whatever stays commented.\n",
    );
    for line in TEMPLATE.lines() {
        let active = !line.trim().is_empty() && !line.trim_start().starts_with('#');
        text.push_str(if active { "# " } else { "" });
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What happens when a principal edits a file in a worktree other than the one it is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The edit is refused, naming the bound worktree and the path to use instead.
    Strict,
    /// The edit is allowed, with a warning in the agent's context.
    Warn,
    /// No check.
    Off,
}

/// How a landing brings a branch onto the base (`[land] strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandStrategy {
    /// The branch's commits replayed on the base, which then fast-forwards.
    Rebase,
    /// A merge commit on the base.
    Merge,
    /// The branch's changes as one commit on the base.
    Squash,
}

/// What the pre-commit guard does (`[git] guard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The commit is refused, naming the holder and `git commit --no-verify`.
    Refuse,
    /// The commit goes ahead with a warning.
    Warn,
    /// No check.
    Off,
}

/// The `[hub]` settings (DESIGN.md §9).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubConfig {
    /// Hub URLs, tried in turn; empty means no hub.
    pub urls: Vec<String>,
    /// Where the token is (`~` is the home directory); `LANES_HUB_TOKEN` wins over it.
    pub token_file: Option<String>,
    /// The repository's identity on the hub; default: its normalized origin URL.
    pub project: Option<String>,
    /// Refuse edits (instead of allowing them with a warning) when no hub answers.
    pub offline_deny: bool,
}

/// The settings lanes uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// See [`Contention`].
    pub contention: Contention,
    /// Lease length of a claim that asks for none.
    pub default_ttl: Duration,
    /// How long the sidecar waits, idle, before it exits.
    pub idle_timeout: Duration,
    /// Whether grants are fsynced before they are answered.
    pub durability: Durability,
    /// How long an ended session (and its checkpoints) is kept.
    pub keep_ended_sessions: Duration,
    /// A session no client hook started ends after this long without acting and without a live claim.
    pub end_idle_sessions: Duration,
    /// Binding policy for sessions.
    pub binding_sessions: Binding,
    /// Binding policy for subagents in worktrees lanes made for them.
    pub binding_subagents: Binding,
    /// A taken task whose holder shows no activity this long is flagged as stalled.
    pub stall_flag_after: Duration,
    /// ... and this long, put back on the board for others.
    pub stall_offer_after: Duration,
    /// Where subagent worktrees go, relative to the main worktree.
    pub agent_worktree_dir: String,
    /// Subagent worktree branch names, with `{session}` and `{agent}`.
    pub agent_branch: String,
    /// What latent work (paths pending in another worktree that no claim covers) does to a claim.
    pub latent: Latent,
    /// The branch work lands on (`[land] base`); default: what `origin/HEAD` names, else main, else master.
    pub land_base: Option<String>,
    /// How `lanes land` brings a branch onto the base.
    pub land_strategy: LandStrategy,
    /// The command a landing runs before the base moves (`[land] test`).
    pub land_test: Option<String>,
    /// A test run longer than this blocks the entry.
    pub land_timeout: Duration,
    /// How many queued entries land together (one test run; bisected when red).
    pub land_batch: usize,
    /// What the pre-commit guard does with a commit that stages another principal's files.
    pub git_guard: Guard,
    /// The shared hub, if any.
    pub hub: HubConfig,
    /// Files read, in order, for `lanes doctor`.
    pub sources: Vec<PathBuf>,
    /// Problems found on the way (unknown keys), for the log and `lanes doctor`.
    pub warnings: Vec<String>,
    /// The `LANES_*` variables that set something, in [`SETTING_VARS`] order.
    pub from_env: Vec<String>,
}

impl Config {
    /// Loads every layer for the repository whose git common dir is `common_dir`.
    pub fn load(common_dir: &Path) -> Result<Config> {
        let mut config = Config::load_files(common_dir)?;
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Loads the built-in defaults and the config files, without the environment: what a sidecar that a
    /// client started on demand runs with.
    pub fn load_files(common_dir: &Path) -> Result<Config> {
        let mut config = Config::from_layer_text(TEMPLATE, "built-in defaults")?;
        for path in layer_paths(common_dir) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    config.apply(&text, &path.display().to_string())?;
                    config.sources.push(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
            }
        }
        Ok(config)
    }

    fn from_layer_text(text: &str, origin: &str) -> Result<Config> {
        let mut config = Config {
            contention: Contention::Repo,
            default_ttl: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(1800),
            durability: Durability::Full,
            keep_ended_sessions: Duration::from_secs(7 * 86_400),
            end_idle_sessions: Duration::from_secs(2 * 3600),
            binding_sessions: Binding::Warn,
            binding_subagents: Binding::Strict,
            stall_flag_after: Duration::from_secs(30 * 60),
            stall_offer_after: Duration::from_secs(60 * 60),
            agent_worktree_dir: ".claude/worktrees".to_owned(),
            agent_branch: "lanes/{session}/{agent}".to_owned(),
            latent: Latent::Refuse,
            land_base: None,
            land_strategy: LandStrategy::Rebase,
            land_test: None,
            land_timeout: Duration::from_secs(30 * 60),
            land_batch: 1,
            git_guard: Guard::Refuse,
            hub: HubConfig::default(),
            sources: Vec::new(),
            warnings: Vec::new(),
            from_env: Vec::new(),
        };
        config.apply(text, origin)?;
        Ok(config)
    }

    /// Every setting as a config file writes it (`sidecar.idle_timeout` → `"30m"`), for `lanes doctor` and
    /// the running sidecar's status.
    pub fn settings(&self) -> BTreeMap<String, String> {
        let duration = |d: Duration| format!("{:?}", lanes_core::human_duration(d));
        let text = |s: &str| format!("{s:?}");
        let optional = |s: &Option<String>| s.as_deref().map(text).unwrap_or_else(|| "(unset)".to_owned());
        [
            ("contention", name_in(&self.contention, CONTENTIONS)),
            ("default_ttl", duration(self.default_ttl)),
            ("durability", name_in(&self.durability, DURABILITIES)),
            ("claims.latent", name_in(&self.latent, LATENTS)),
            ("land.base", optional(&self.land_base)),
            ("land.strategy", name_in(&self.land_strategy, STRATEGIES)),
            ("land.test", optional(&self.land_test)),
            ("land.timeout", duration(self.land_timeout)),
            ("land.batch", self.land_batch.to_string()),
            ("git.guard", name_in(&self.git_guard, GUARDS)),
            ("sidecar.idle_timeout", duration(self.idle_timeout)),
            ("sessions.keep_ended", duration(self.keep_ended_sessions)),
            ("sessions.end_idle", duration(self.end_idle_sessions)),
            ("worktrees.dir", text(&self.agent_worktree_dir)),
            ("worktrees.branch", text(&self.agent_branch)),
            ("binding.sessions", name_in(&self.binding_sessions, BINDINGS)),
            ("binding.subagents", name_in(&self.binding_subagents, BINDINGS)),
            ("stall.flag_after", duration(self.stall_flag_after)),
            ("stall.offer_after", duration(self.stall_offer_after)),
            ("hub.urls", format!("{:?}", self.hub.urls)),
            ("hub.token_file", optional(&self.hub.token_file)),
            ("hub.project", optional(&self.hub.project)),
            ("hub.offline", name_in(&self.hub.offline_deny, OFFLINES)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// The claim policy these settings give.
    pub fn policy(&self) -> Policy {
        Policy { contention: self.contention, default_ttl: self.default_ttl, latent: self.latent }
    }

    fn apply(&mut self, text: &str, origin: &str) -> Result<()> {
        let table: toml::Table = text.parse().with_context(|| format!("failed to parse {origin}"))?;
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("contention", toml::Value::String(s)) => self.contention = parse_contention(s, origin)?,
                ("default_ttl", toml::Value::String(s)) => self.default_ttl = ttl(s, origin, key)?,
                ("durability", toml::Value::String(s)) => self.durability = parse_durability(s, origin)?,
                ("sidecar", toml::Value::Table(sidecar)) => {
                    for (key, value) in sidecar {
                        match (key.as_str(), value) {
                            ("idle_timeout", toml::Value::String(s)) => self.idle_timeout = ttl(s, origin, key)?,
                            _ => self.warnings.push(format!("{origin}: unknown key sidecar.{key}")),
                        }
                    }
                }
                ("sessions", toml::Value::Table(sessions)) => {
                    for (key, value) in sessions {
                        match (key.as_str(), value) {
                            ("keep_ended", toml::Value::String(s)) => self.keep_ended_sessions = ttl(s, origin, key)?,
                            ("end_idle", toml::Value::String(s)) => self.end_idle_sessions = ttl(s, origin, key)?,
                            _ => self.warnings.push(format!("{origin}: unknown key sessions.{key}")),
                        }
                    }
                }
                ("stall", toml::Value::Table(stall)) => {
                    for (key, value) in stall {
                        match (key.as_str(), value) {
                            ("flag_after", toml::Value::String(s)) => self.stall_flag_after = ttl(s, origin, key)?,
                            ("offer_after", toml::Value::String(s)) => self.stall_offer_after = ttl(s, origin, key)?,
                            _ => self.warnings.push(format!("{origin}: unknown key stall.{key}")),
                        }
                    }
                }
                ("binding", toml::Value::Table(binding)) => {
                    for (key, value) in binding {
                        match (key.as_str(), value) {
                            ("sessions", toml::Value::String(s)) => self.binding_sessions = parse_binding(s, origin)?,
                            ("subagents", toml::Value::String(s)) => self.binding_subagents = parse_binding(s, origin)?,
                            _ => self.warnings.push(format!("{origin}: unknown key binding.{key}")),
                        }
                    }
                }
                ("claims", toml::Value::Table(claims)) => {
                    for (key, value) in claims {
                        match (key.as_str(), value) {
                            ("latent", toml::Value::String(s)) => self.latent = parse_latent(s, origin)?,
                            _ => self.warnings.push(format!("{origin}: unknown key claims.{key}")),
                        }
                    }
                }
                ("land", toml::Value::Table(land)) => {
                    for (key, value) in land {
                        match (key.as_str(), value) {
                            ("base", toml::Value::String(s)) => self.land_base = Some(s.clone()),
                            ("strategy", toml::Value::String(s)) => {
                                self.land_strategy = one_of(s, origin, "land.strategy", STRATEGIES)?;
                            }
                            ("test", toml::Value::String(s)) => {
                                self.land_test = Some(s.clone()).filter(|t| !t.trim().is_empty());
                            }
                            ("timeout", toml::Value::String(s)) => self.land_timeout = ttl(s, origin, key)?,
                            ("batch", toml::Value::Integer(n)) => match usize::try_from(*n) {
                                Ok(n @ 1..=100) => self.land_batch = n,
                                _ => bail!("{origin}: land.batch must be 1 to 100, not {n}"),
                            },
                            _ => self.warnings.push(format!("{origin}: unknown key land.{key}")),
                        }
                    }
                }
                ("git", toml::Value::Table(git)) => {
                    for (key, value) in git {
                        match (key.as_str(), value) {
                            ("guard", toml::Value::String(s)) => self.git_guard = parse_guard(s, origin)?,
                            _ => self.warnings.push(format!("{origin}: unknown key git.{key}")),
                        }
                    }
                }
                ("worktrees", toml::Value::Table(worktrees)) => {
                    for (key, value) in worktrees {
                        match (key.as_str(), value) {
                            ("dir", toml::Value::String(s)) => self.agent_worktree_dir = s.clone(),
                            ("branch", toml::Value::String(s)) => self.agent_branch = s.clone(),
                            _ => self.warnings.push(format!("{origin}: unknown key worktrees.{key}")),
                        }
                    }
                }
                ("hub", toml::Value::Table(hub)) => {
                    for (key, value) in hub {
                        match (key.as_str(), value) {
                            ("urls", toml::Value::Array(urls)) => {
                                self.hub.urls = urls.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect();
                            }
                            ("url", toml::Value::String(url)) => self.hub.urls = vec![url.clone()],
                            ("token_file", toml::Value::String(s)) => self.hub.token_file = Some(s.clone()),
                            ("project", toml::Value::String(s)) => self.hub.project = Some(s.clone()),
                            ("offline", toml::Value::String(s)) => self.hub.offline_deny = parse_offline(s, origin)?,
                            _ => self.warnings.push(format!("{origin}: unknown key hub.{key}")),
                        }
                    }
                }
                _ => self.warnings.push(format!("{origin}: unknown key {key} (or a value of the wrong type)")),
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        self.from_env = SETTING_VARS.iter().filter(|name| var(name).is_some()).map(|name| (*name).to_owned()).collect();
        if let Some(s) = var("LANES_CONTENTION") {
            self.contention = parse_contention(&s, "LANES_CONTENTION")?;
        }
        if let Some(s) = var("LANES_DEFAULT_TTL") {
            self.default_ttl = ttl(&s, "LANES_DEFAULT_TTL", "value")?;
        }
        if let Some(s) = var("LANES_DURABILITY") {
            self.durability = parse_durability(&s, "LANES_DURABILITY")?;
        }
        if let Some(s) = var("LANES_STALL_FLAG_AFTER") {
            self.stall_flag_after = ttl(&s, "LANES_STALL_FLAG_AFTER", "value")?;
        }
        if let Some(s) = var("LANES_STALL_OFFER_AFTER") {
            self.stall_offer_after = ttl(&s, "LANES_STALL_OFFER_AFTER", "value")?;
        }
        if let Some(s) = var("LANES_KEEP_ENDED_SESSIONS") {
            self.keep_ended_sessions = ttl(&s, "LANES_KEEP_ENDED_SESSIONS", "value")?;
        }
        if let Some(s) = var("LANES_IDLE_TIMEOUT") {
            self.idle_timeout = ttl(&s, "LANES_IDLE_TIMEOUT", "value")?;
        }
        if let Some(s) = var("LANES_HUB_URLS") {
            self.hub.urls = s.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        }
        if let Some(s) = var("LANES_HUB_OFFLINE") {
            self.hub.offline_deny = parse_offline(&s, "LANES_HUB_OFFLINE")?;
        }
        Ok(())
    }
}

/// The config files of a repository, lowest layer first (each may be missing).
fn layer_paths(common_dir: &Path) -> Vec<PathBuf> {
    let user = directories::BaseDirs::new().map(|d| d.config_dir().join("lanes/config.toml"));
    let repo = common_dir.parent().map(|root| root.join(".lanes.toml"));
    [user, repo, Some(local_config_path(common_dir))].into_iter().flatten().collect()
}

/// What the config files look like on disk (modification time and size of each, or absent): the sidecar
/// compares it to notice an edited, added or removed file.
pub fn files_fingerprint(common_dir: &Path) -> Vec<Option<(std::time::SystemTime, u64)>> {
    layer_paths(common_dir)
        .iter()
        .map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// `<git-common-dir>/lanes/config.toml`.
pub fn local_config_path(common_dir: &Path) -> PathBuf {
    common_dir.join("lanes").join("config.toml")
}

const CONTENTIONS: &[(&str, Contention)] = &[("repo", Contention::Repo), ("worktree", Contention::Worktree)];
const BINDINGS: &[(&str, Binding)] = &[("strict", Binding::Strict), ("warn", Binding::Warn), ("off", Binding::Off)];
const LATENTS: &[(&str, Latent)] = &[("refuse", Latent::Refuse), ("warn", Latent::Warn), ("off", Latent::Off)];
const STRATEGIES: &[(&str, LandStrategy)] =
    &[("rebase", LandStrategy::Rebase), ("merge", LandStrategy::Merge), ("squash", LandStrategy::Squash)];
const GUARDS: &[(&str, Guard)] = &[("refuse", Guard::Refuse), ("warn", Guard::Warn), ("off", Guard::Off)];
/// `hub.offline`: whether edits are refused while no hub answers.
const OFFLINES: &[(&str, bool)] = &[("allow", false), ("deny", true)];
const DURABILITIES: &[(&str, Durability)] = &[("full", Durability::Full), ("process", Durability::Process)];

fn parse_contention(s: &str, origin: &str) -> Result<Contention> {
    one_of(s, origin, "contention", CONTENTIONS)
}

fn parse_binding(s: &str, origin: &str) -> Result<Binding> {
    one_of(s, origin, "binding", BINDINGS)
}

fn parse_latent(s: &str, origin: &str) -> Result<Latent> {
    one_of(s, origin, "claims.latent", LATENTS)
}

fn parse_guard(s: &str, origin: &str) -> Result<Guard> {
    one_of(s, origin, "git.guard", GUARDS)
}

fn parse_offline(s: &str, origin: &str) -> Result<bool> {
    one_of(s, origin, "hub.offline", OFFLINES)
}

fn parse_durability(s: &str, origin: &str) -> Result<Durability> {
    one_of(s, origin, "durability", DURABILITIES)
}

/// The name `value` has among `choices`, quoted as in a config file.
fn name_in<T: PartialEq>(value: &T, choices: &[(&str, T)]) -> String {
    choices.iter().find(|(_, v)| v == value).map(|(name, _)| format!("{name:?}")).unwrap_or_default()
}

/// The value `s` names among `choices`, or an error listing them (`key must be "a", "b" or "c", not "x"`).
fn one_of<T: Copy>(s: &str, origin: &str, key: &str, choices: &[(&str, T)]) -> Result<T> {
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == s) {
        return Ok(*value);
    }
    let names: Vec<String> = choices.iter().map(|(name, _)| format!("{name:?}")).collect();
    let listed = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    bail!("{origin}: {key} must be {listed}, not {s:?}")
}

fn ttl(s: &str, origin: &str, key: &str) -> Result<Duration> {
    parse_ttl(s).map_err(|e| anyhow::anyhow!("{origin}: {key}: {e}"))
}

/// The log filter from `LANES_LOG` (default `warn`), with two targets capped at info whatever it asks:
/// jsonrpsee logs whole requests (prompts, before any redaction) at debug and trace, and the file watcher
/// (notify) logs every inotify event at trace: the sidecar's log lives in the watched git dir, so each line
/// it wrote was an event that wrote another, and an idle sidecar filled the disk at ~14 MB/s.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    ["jsonrpsee=info", "notify=info"].into_iter().fold(filter, |filter, cap| match cap.parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    })
}

/// A hub token, for the hub and its clients alike: `LANES_HUB_TOKEN` if set, else the file's first text;
/// never from the command line. An empty one is none.
pub fn read_token(file: Option<&Path>) -> Result<Option<String>> {
    let text = match std::env::var("LANES_HUB_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token,
        _ => match file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the hub token {}", path.display()))?,
            None => return Ok(None),
        },
    };
    Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_gives_the_defaults() {
        let config = Config::from_layer_text(TEMPLATE, "template").expect("template parses");
        assert_eq!(config.contention, Contention::Repo);
        assert_eq!(config.default_ttl, Duration::from_secs(1800));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn later_layers_win_and_unknown_keys_warn() {
        let mut config = Config::from_layer_text(TEMPLATE, "template").expect("template parses");
        config
            .apply("contention = \"worktree\"\ncolour = \"blue\"\n[sidecar]\nidle_timeout = \"5m\"", "user")
            .expect("valid");
        assert_eq!(config.contention, Contention::Worktree);
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.warnings.len(), 1);
        config.apply_env(|name| (name == "LANES_DEFAULT_TTL").then(|| "2h".to_owned())).expect("valid");
        assert_eq!(config.default_ttl, Duration::from_secs(7200));
    }

    #[test]
    fn every_setting_variable_changes_a_setting_and_is_recorded() {
        let defaults = Config::from_layer_text(TEMPLATE, "template").expect("template parses");
        let value = |name: &str| match name {
            "LANES_CONTENTION" => "worktree",
            "LANES_DURABILITY" => "process",
            "LANES_HUB_URLS" => "ws://127.0.0.1:9",
            "LANES_HUB_OFFLINE" => "deny",
            _ => "7m",
        };
        for name in SETTING_VARS {
            let mut config = defaults.clone();
            config.apply_env(|asked| (asked == *name).then(|| value(name).to_owned())).expect("valid");
            assert_ne!(config.settings(), defaults.settings(), "{name} changed nothing");
            assert_eq!(config.from_env, vec![(*name).to_owned()]);
        }
    }

    #[test]
    fn the_commented_template_sets_nothing_and_documents_every_setting() {
        let commented = commented_template();
        let table: toml::Table = commented.parse().expect("commented template parses");
        assert!(table.is_empty(), "the local file pins {table:?}");
        for line in TEMPLATE.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            assert!(commented.lines().any(|c| c == format!("# {line}")), "{line:?} is not documented");
        }
    }

    #[test]
    fn a_wrong_choice_names_the_right_ones() {
        let error = parse_binding("loose", "user").expect_err("refused").to_string();
        assert_eq!(error, "user: binding must be \"strict\", \"warn\" or \"off\", not \"loose\"");
        let error = parse_contention("galaxy", "user").expect_err("refused").to_string();
        assert_eq!(error, "user: contention must be \"repo\" or \"worktree\", not \"galaxy\"");
    }

    #[test]
    fn invalid_values_are_errors() {
        let mut config = Config::from_layer_text(TEMPLATE, "template").expect("template parses");
        assert!(config.apply("contention = \"galaxy\"", "user").is_err());
        assert!(config.apply("default_ttl = \"90d\"", "user").is_err());
        assert!(config.apply("not toml at all [", "user").is_err());
    }
}
