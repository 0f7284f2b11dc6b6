//! `/healthz`, `/livez`, `/readyz`: upstream's check lists, `?verbose`, one storage check that actually talks to
//! the store.

use std::time::Duration;

use crate::state::AppState;

const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The text body and whether every check passed, for `endpoint` (`healthz`, `livez`, `readyz`), optionally one
/// named check (`/readyz/etcd`).
pub async fn check(
    state: &AppState,
    endpoint: &str,
    only: Option<&str>,
    verbose: bool,
) -> Result<(bool, String), String> {
    let mut checks: Vec<(&str, Option<String>)> = vec![("ping", None), ("log", None)];
    let store_ok = match tokio::time::timeout(STORE_TIMEOUT, state.store.current_revision()).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    checks.push(("etcd", store_ok));
    if endpoint == "readyz" {
        checks.push(("etcd-readiness", checks[2].1.clone()));
        checks.push(("informer-sync", None));
        let shutting_down = state
            .shutdown
            .is_cancelled()
            .then(|| "process is shutting down".to_string());
        checks.push(("shutdown", shutting_down));
    }
    checks.push(("poststarthook/start-apiserver-admission-initializer", None));
    checks.push(("poststarthook/generic-apiserver-start-informers", None));
    checks.push(("poststarthook/bootstrap-controller", None));
    let bootstrapped = state.bootstrapped.load(std::sync::atomic::Ordering::SeqCst);
    checks.push((
        "poststarthook/rbac/bootstrap-roles",
        (!bootstrapped).then(|| "not finished".to_string()),
    ));
    if let Some(name) = only {
        let Some((_, res)) = checks.iter().find(|(n, _)| *n == name) else {
            return Err(format!("no such check {name}"));
        };
        return Ok(match res {
            None => (true, "ok".into()),
            Some(e) => {
                tracing::warn!(check = name, error = %e, "health check failed");
                (false, format!("internal server error: {name} check failed"))
            }
        });
    }
    let ok = checks.iter().all(|(_, r)| r.is_none());
    if !verbose && ok {
        return Ok((true, "ok".into()));
    }
    let mut body = String::new();
    for (name, res) in &checks {
        match res {
            None => body.push_str(&format!("[+]{name} ok\n")),
            Some(e) => {
                tracing::warn!(check = name, error = %e, "health check failed");
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    body.push_str(&format!(
        "{endpoint} check {}\n",
        if ok { "passed" } else { "failed" }
    ));
    Ok((ok, body))
}
