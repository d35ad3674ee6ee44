//! logind's PrepareForSleep signal on the system bus: after a resume, every connection is
//! suspect (its peer may be long gone, and TCP keepalive takes a minute and a half to say so),
//! so the accounts reconnect and resync at once. Without a system bus (containers, some
//! minimal systems) this does nothing; the wall-clock jump check still notices suspends.

use futures_util::StreamExt;
use tokio::sync::watch;

/// Listens until the bus goes away, bumping `resumed` after every resume.
pub async fn watch(resumed: watch::Sender<u64>) {
    let connection = match zbus::Connection::system().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "no system bus: suspend is noticed by the clock check only");
            return;
        }
    };
    // Any sender is accepted: a forged signal only makes the daemon resync, which is harmless.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.login1.Manager")
        .member("PrepareForSleep")
        .path("/org/freedesktop/login1")
        .build();
    let rule = match rule {
        Ok(rule) => rule,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the PrepareForSleep match rule");
            return;
        }
    };
    let mut stream = match zbus::MessageStream::for_match_rule(rule, &connection, None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot subscribe to PrepareForSleep");
            return;
        }
    };
    tracing::debug!("listening for suspend and resume on the system bus");
    while let Some(message) = stream.next().await {
        let Ok(message) = message else { continue };
        // true: about to sleep; false: just woke up.
        match message.body().deserialize::<bool>() {
            Ok(false) => {
                tracing::info!("resumed from suspend: reconnecting and resyncing every account");
                resumed.send_modify(|n| *n += 1);
            }
            Ok(true) => tracing::info!("going to sleep"),
            Err(_) => {}
        }
    }
}
