//! The paths an `apply_patch` text edits (Codex, opencode, Copilot; OTHER-AGENTS.md "apply_patch"). Every
//! `Add File`, `Update File`, `Delete File` and `Move to` path counts; any other `*** ` line makes the patch
//! unreadable, and an edit lanes cannot read is refused, never let through unchecked.

/// The paths `text` edits, in order and without repeats, or why it cannot be read.
pub fn edited_paths(text: &str) -> Result<Vec<String>, String> {
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    if !lines.by_ref().any(|line| line.trim() == "*** Begin Patch") {
        return Err("it has no `*** Begin Patch` line".to_owned());
    }
    let mut paths: Vec<String> = Vec::new();
    for line in lines {
        let Some(marker) = line.strip_prefix("*** ") else { continue };
        if marker == "End Patch" {
            return if paths.is_empty() { Err("it names no file".to_owned()) } else { Ok(paths) };
        }
        if marker == "End of File" {
            continue;
        }
        let path = ["Add File: ", "Update File: ", "Delete File: ", "Move to: "]
            .iter()
            .find_map(|prefix| marker.strip_prefix(prefix))
            .map(str::trim)
            .ok_or_else(|| format!("it has a line lanes does not know: `{line}`"))?;
        if path.is_empty() {
            return Err(format!("`{line}` names no file"));
        }
        if !paths.iter().any(|p| p == path) {
            paths.push(path.to_owned());
        }
    }
    Err("it has no `*** End Patch` line".to_owned())
}

/// The patch inside a shell command that runs `apply_patch` (Codex sends patches as `apply_patch <<'EOF' …`):
/// `None` when the command runs no `apply_patch`, else the text from `*** Begin Patch` on (or the whole
/// command, which then fails to parse, when the patch comes from somewhere lanes cannot see).
pub fn in_shell_command(command: &str) -> Option<&str> {
    let runs_apply_patch = command.split(['&', ';', '|', '\n', '(']).any(|part| {
        part.split_whitespace().next().is_some_and(|word| word == "apply_patch" || word.ends_with("/apply_patch"))
    });
    if !runs_apply_patch {
        return None;
    }
    Some(command.find("*** Begin Patch").map_or(command, |at| &command[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_path_is_found_once() {
        let patch = "*** Begin Patch\n*** Add File: src/new.rs\n+fn new() {}\n*** Update File: src/lib.rs\n\
                     *** Move to: src/core.rs\n@@\n-a\n+b\n*** End of File\n*** Delete File: src/old.rs\n\
                     *** Update File: src/new.rs\n@@\n+x\n*** End Patch\n";
        assert_eq!(edited_paths(patch).expect("readable"), ["src/new.rs", "src/lib.rs", "src/core.rs", "src/old.rs"]);
    }

    #[test]
    fn an_unknown_marker_or_a_cut_patch_is_unreadable() {
        let unknown = "*** Begin Patch\n*** Rename File: a\n*** End Patch\n";
        assert!(edited_paths(unknown).expect_err("unreadable").contains("Rename File"));
        assert!(edited_paths("*** Begin Patch\n*** Add File: a\n+x\n").expect_err("unreadable").contains("End Patch"));
        assert!(edited_paths("echo hi").expect_err("unreadable").contains("Begin Patch"));
        assert!(edited_paths("*** Begin Patch\n*** End Patch\n").expect_err("unreadable").contains("no file"));
        assert!(
            edited_paths("*** Begin Patch\n*** Add File:  \n*** End Patch")
                .expect_err("unreadable")
                .contains("names no file")
        );
    }

    #[test]
    fn a_shell_command_running_apply_patch_carries_its_patch() {
        let command = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a.rs\n+x\n*** End Patch\nEOF\n";
        assert_eq!(edited_paths(in_shell_command(command).expect("a patch")).expect("readable"), ["a.rs"]);
        assert!(in_shell_command("cd src && apply_patch < fix.patch").is_some_and(|p| edited_paths(p).is_err()));
        assert!(in_shell_command("grep apply_patch README.md").is_none());
        assert!(in_shell_command("cargo test").is_none());
    }
}
