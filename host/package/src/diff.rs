//! `qvm package diff OLD NEW`: what an approver needs to decide, and nothing secret: the
//! source diff, schema, cost and policy changes. Bundles are never opened.

use std::fmt::Write;

use crate::manifest::{Field, Manifest};
use crate::policy::Identity;

/// A line diff of two texts (longest common subsequence), as `-`/`+`/` ` lines.
pub fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Texts are program sources: small, so the quadratic table is fine; beyond a bound,
    // say so instead of allocating.
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return "(sources too long for a line diff)\n".into();
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out
}

fn fields(out: &mut String, what: &str, old: &[Field], new: &[Field]) {
    let show = |f: &Field| {
        format!(
            "{}[{}] scale {}{}",
            f.ty,
            f.len,
            f.scale,
            f.bounds
                .map_or(String::new(), |(lo, hi)| format!(" in [{lo}, {hi}]"))
        )
    };
    for f in new {
        match old.iter().find(|o| o.name == f.name) {
            None => {
                let _ = writeln!(out, "  + {what} {}: {}", f.name, show(f));
            }
            Some(o) if o != f => {
                let _ = writeln!(out, "  ~ {what} {}: {} -> {}", f.name, show(o), show(f));
            }
            Some(_) => {}
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|f| f.name == o.name)) {
        let _ = writeln!(out, "  - {what} {}", o.name);
    }
}

fn identity(i: &Identity) -> String {
    format!(
        "budget {} per {} s, {} per minute (burst {}), outputs {:?}{}",
        i.budget,
        i.period_secs,
        i.rate_per_minute,
        i.burst,
        i.outputs,
        if i.reveal_to_client {
            ", revealed to the client"
        } else {
            ""
        }
    )
}

/// The differences between two versions' manifests.
pub fn diff(old: &Manifest, new: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} version {} -> {} version {}",
        old.program, old.version, new.program, new.version
    );
    match (new.previous, old.id()) {
        (Some(p), Ok(id)) if p == id => {
            let _ = writeln!(out, "the new version names the old one as its previous");
        }
        _ => {
            let _ = writeln!(
                out,
                "WARNING: the new version does not name the old one as its previous"
            );
        }
    }
    if old.committee != new.committee || old.k != new.k || old.n != new.n {
        let _ = writeln!(
            out,
            "committee: {} (K {}, N {}) -> {} (K {}, N {})",
            old.committee, old.k, old.n, new.committee, new.k, new.n
        );
    }
    if old.owner != new.owner {
        let _ = writeln!(out, "WARNING: the owner key changed");
    }
    let _ = writeln!(out, "\nschema:");
    fields(&mut out, "input", &old.schema.inputs, &new.schema.inputs);
    fields(&mut out, "secret", &old.schema.secrets, &new.schema.secrets);
    fields(&mut out, "output", &old.schema.outputs, &new.schema.outputs);
    let (a, b) = (&old.cost, &new.cost);
    let _ = writeln!(
        out,
        "\ncost: rounds {} -> {}, multiplications {} -> {}, comparisons {} -> {}, units {} -> {}",
        a.rounds,
        b.rounds,
        a.multiplications,
        b.multiplications,
        a.comparisons,
        b.comparisons,
        a.cost_units,
        b.cost_units
    );
    let _ = writeln!(out, "\npolicy:");
    for i in &new.policy.identities {
        match old.policy.identities.iter().find(|o| o.name == i.name) {
            None => {
                let _ = writeln!(out, "  + identity {}: {}", i.name, identity(i));
            }
            Some(o) if o != i => {
                let _ = writeln!(
                    out,
                    "  ~ identity {}: {} -> {}{}",
                    i.name,
                    identity(o),
                    identity(i),
                    if o.key != i.key { " (new key)" } else { "" }
                );
            }
            Some(_) => {}
        }
    }
    for o in old
        .policy
        .identities
        .iter()
        .filter(|o| !new.policy.identities.iter().any(|i| i.name == o.name))
    {
        let _ = writeln!(out, "  - identity {}", o.name);
    }
    if old.policy.degrade != new.policy.degrade {
        let _ = writeln!(
            out,
            "  ~ degrade: {:?} -> {:?}",
            old.policy.degrade, new.policy.degrade
        );
    }
    let _ = writeln!(out, "\nsource:");
    out.push_str(&line_diff(&old.source, &new.source));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_marks_changes() {
        let d = line_diff("a\nb\nc\n", "a\nx\nc\nd\n");
        assert_eq!(d, "  a\n+ x\n- b\n  c\n+ d\n");
    }
}
