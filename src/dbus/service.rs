//! The daemon's side of the API: the manager object, one object per account, and the task that
//! turns the daemon's events into property changes and signals, in order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use zbus::fdo::{Properties, RequestNameFlags, RequestNameReply};
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, OwnedVariant, Variant};

use super::{ACCOUNT_INTERFACE, AccountInfo, Error, NAME, PATH, account_path};
use crate::control::{AccountStatus, ControlError, Event, Reply, Request, reports_json};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the session bus: {0}")]
    NoBus(zbus::Error),
    #[error(
        "another idlewild daemon{} already owns {NAME} on this session bus; stop it first (systemctl --user stop idlewild)",
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    Taken { pid: Option<u32> },
    #[error("cannot offer the D-Bus API: {0}")]
    Bus(zbus::Error),
}

/// The API while the daemon runs: owns the bus name; events are published in order by a task of
/// its own, so the daemon never waits for the bus.
pub struct Service {
    connection: Connection,
    events: mpsc::UnboundedSender<Event>,
    publisher: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Connects to the session bus, exports the manager object and takes the well-known name.
    /// The name is taken last, so no call arrives before the objects are there; a name already
    /// taken is an error (`DO_NOT_QUEUE`): a second daemon must not wait in line.
    pub async fn start(
        requests: mpsc::Sender<Request>,
        config_file: &std::path::Path,
        accounts: &[AccountStatus],
    ) -> Result<Service, StartError> {
        let connection = zbus::connection::Builder::session()
            .build()
            .await
            .map_err(StartError::NoBus)?;
        let accounts: BTreeMap<String, AccountInfo> = accounts
            .iter()
            .map(|s| (s.name.clone(), AccountInfo::from_status(s)))
            .collect();
        let server = connection.object_server();
        for info in accounts.values() {
            server
                .at(
                    account_path(&info.name),
                    AccountObject { info: info.clone() },
                )
                .await
                .map_err(StartError::Bus)?;
        }
        let manager = Manager {
            requests,
            config_file: config_file.display().to_string(),
            accounts,
        };
        server.at(PATH, manager).await.map_err(StartError::Bus)?;
        server
            .at(PATH, zbus::fdo::ObjectManager)
            .await
            .map_err(StartError::Bus)?;
        match connection
            .request_name_with_flags(NAME, RequestNameFlags::DO_NOT_QUEUE)
            .await
        {
            Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {}
            Ok(RequestNameReply::Exists | RequestNameReply::InQueue)
            | Err(zbus::Error::NameTaken) => {
                let pid = owner_pid(&connection).await;
                return Err(StartError::Taken { pid });
            }
            Err(e) => return Err(StartError::Bus(e)),
        }
        let (events, rx) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publish_all(connection.clone(), rx));
        Ok(Service {
            connection,
            events,
            publisher,
        })
    }

    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Publishes what is still queued (within a bound), then gives the name up.
    pub async fn stop(self) {
        drop(self.events);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.publisher).await;
        let _ = self.connection.release_name(NAME).await;
    }
}

async fn owner_pid(connection: &Connection) -> Option<u32> {
    let dbus = zbus::fdo::DBusProxy::new(connection).await.ok()?;
    let name = zbus::names::BusName::try_from(NAME).ok()?;
    dbus.get_connection_unix_process_id(name).await.ok()
}

async fn publish_all(connection: Connection, mut events: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        if let Err(e) = publish(&connection, event).await {
            tracing::warn!(error = %e, "cannot publish on the session bus");
        }
    }
}

async fn publish(connection: &Connection, event: Event) -> zbus::Result<()> {
    let server = connection.object_server();
    let manager = server.interface::<_, Manager>(PATH).await?;
    let emitter = manager.signal_emitter();
    match event {
        Event::AccountAdded(status) => {
            let info = AccountInfo::from_status(&status);
            server
                .at(
                    account_path(&info.name),
                    AccountObject { info: info.clone() },
                )
                .await?;
            manager
                .get_mut()
                .await
                .accounts
                .insert(info.name.clone(), info);
            manager.get().await.accounts_changed(emitter).await?;
        }
        Event::AccountRemoved(name) => {
            server
                .remove::<AccountObject, _>(account_path(&name))
                .await?;
            manager.get_mut().await.accounts.remove(&name);
            manager.get().await.accounts_changed(emitter).await?;
        }
        Event::Status(status) => {
            let info = AccountInfo::from_status(&status);
            manager
                .get_mut()
                .await
                .accounts
                .insert(info.name.clone(), info.clone());
            let path = account_path(&info.name);
            let object = server.interface::<_, AccountObject>(path.as_str()).await?;
            let old = std::mem::replace(&mut object.get_mut().await.info, info.clone());
            let changed = changed_properties(&old, &info);
            if !changed.is_empty() {
                Properties::properties_changed(
                    object.signal_emitter(),
                    ACCOUNT_INTERFACE.try_into()?,
                    changed,
                    Cow::Borrowed(&[]),
                )
                .await?;
            }
            if old.state != info.state {
                Manager::state_changed(emitter, &info.name, &info.state).await?;
            }
        }
        Event::SyncStarted { account, jobs } => {
            Manager::sync_started(emitter, &account, jobs).await?;
        }
        Event::SyncFinished {
            account,
            jobs,
            received,
            sent,
            error,
        } => {
            let error = error.unwrap_or_default();
            Manager::sync_finished(emitter, &account, jobs, received, sent, &error).await?;
        }
        Event::NewMail {
            account,
            folder,
            count,
        } => {
            Manager::new_mail(emitter, &account, &folder, count).await?;
        }
        Event::JobFinished {
            job,
            status,
            error,
            reports,
        } => {
            let report =
                serde_json::to_string(&reports_json(&reports)).unwrap_or_else(|_| "[]".to_owned());
            let error = error.unwrap_or_default();
            Manager::job_finished(emitter, job, status.as_str(), &error, &report).await?;
        }
    }
    Ok(())
}

/// The properties that differ, by their D-Bus names.
fn changed_properties(
    old: &AccountInfo,
    new: &AccountInfo,
) -> HashMap<&'static str, Variant<'static>> {
    let mut changed = HashMap::new();
    if old.state != new.state {
        changed.insert("State", Variant::from(new.state.clone()));
    }
    if old.last_sync != new.last_sync {
        changed.insert("LastSync", Variant::from(new.last_sync));
    }
    if old.last_error != new.last_error {
        changed.insert("LastError", Variant::from(new.last_error.clone()));
    }
    if old.unseen != new.unseen {
        changed.insert("Unseen", Variant::from(new.unseen));
    }
    if old.total != new.total {
        changed.insert("Total", Variant::from(new.total));
    }
    if old.paused != new.paused {
        changed.insert("Paused", Variant::from(new.paused));
    }
    if old.paused_until != new.paused_until {
        changed.insert("PausedUntil", Variant::from(new.paused_until));
    }
    if old.folders != new.folders {
        changed.insert("Folders", Variant::from(new.folders.clone()));
    }
    changed
}

/// `/org/idlewild/Idlewild1`: requests go to the daemon's main task and are answered from there.
struct Manager {
    requests: mpsc::Sender<Request>,
    config_file: String,
    accounts: BTreeMap<String, AccountInfo>,
}

impl Manager {
    async fn ask<T>(&self, request: impl FnOnce(Reply<T>) -> Request) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(request(reply))
            .await
            .map_err(|_| Error::from(ControlError::Stopping))?;
        match answer.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::from(ControlError::Stopping)),
        }
    }
}

#[zbus::interface(name = "org.idlewild.Idlewild1")]
impl Manager {
    /// Syncs one account's folders (all of them when `folders` is empty). Returns at once with
    /// the job's number; JobFinished says how it ended.
    async fn sync(&self, account: String, folders: Vec<String>) -> Result<u64, Error> {
        self.ask(|reply| Request::Sync {
            account: Some(account),
            folders,
            allow_mass_delete: false,
            reply,
        })
        .await
    }

    /// Syncs every account that is not paused, as one job.
    async fn sync_all(&self) -> Result<u64, Error> {
        self.ask(|reply| Request::Sync {
            account: None,
            folders: Vec::new(),
            allow_mass_delete: false,
            reply,
        })
        .await
    }

    /// Sync with options: an empty `account` means every account; option `AllowMassDelete` (b)
    /// lets deletions through that the safety valve would stop.
    async fn sync_with_options(
        &self,
        account: String,
        folders: Vec<String>,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<u64, Error> {
        let mut allow_mass_delete = false;
        for (key, value) in options {
            match key.as_str() {
                "AllowMassDelete" => {
                    allow_mass_delete = bool::try_from(value).map_err(|_| {
                        Error::InvalidArgs("the option AllowMassDelete takes a boolean".into())
                    })?;
                }
                other => {
                    return Err(Error::InvalidArgs(format!(
                        "unknown option \"{other}\" (known: AllowMassDelete)"
                    )));
                }
            }
        }
        self.ask(|reply| Request::Sync {
            account: (!account.is_empty()).then_some(account),
            folders,
            allow_mass_delete,
            reply,
        })
        .await
    }

    /// Stops syncing the account for `seconds` (0: until resumed). The pause is kept on disk and
    /// survives a restart; a sync already running finishes first.
    async fn pause(&self, account: String, seconds: u32) -> Result<(), Error> {
        self.ask(|reply| Request::Pause {
            account,
            seconds: u64::from(seconds),
            reply,
        })
        .await
    }

    /// Ends a pause (and syncs at once); on an account that is not paused, retries now.
    async fn resume(&self, account: String) -> Result<(), Error> {
        self.ask(|reply| Request::Resume { account, reply }).await
    }

    /// Reads the configuration file again, as SIGHUP does; a wrong file is an error and the
    /// running configuration stays.
    async fn reload(&self) -> Result<(), Error> {
        self.ask(|reply| Request::Reload { reply }).await
    }

    /// Every account's properties, by account name.
    async fn status(&self) -> BTreeMap<String, AccountInfo> {
        self.accounts.clone()
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// The configuration file the daemon runs (an absolute path): a client with another one
    /// must not send it requests meant for other accounts.
    #[zbus(property)]
    fn config_file(&self) -> String {
        self.config_file.clone()
    }

    /// The account objects.
    #[zbus(property)]
    fn accounts(&self) -> Vec<OwnedObjectPath> {
        self.accounts
            .keys()
            .filter_map(|name| OwnedObjectPath::try_from(account_path(name)).ok())
            .collect()
    }

    #[zbus(signal)]
    async fn sync_started(
        emitter: &SignalEmitter<'_>,
        account: &str,
        jobs: Vec<u64>,
    ) -> zbus::Result<()>;

    /// `received`: messages copied to the Maildir; `sent`: to the server.
    #[zbus(signal)]
    async fn sync_finished(
        emitter: &SignalEmitter<'_>,
        account: &str,
        jobs: Vec<u64>,
        received: u32,
        sent: u32,
        error: &str,
    ) -> zbus::Result<()>;

    /// `status`: ok, failed or refused; `report`: the per-folder results as JSON.
    #[zbus(signal)]
    async fn job_finished(
        emitter: &SignalEmitter<'_>,
        job: u64,
        status: &str,
        error: &str,
        report: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn new_mail(
        emitter: &SignalEmitter<'_>,
        account: &str,
        folder: &str,
        count: u32,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn state_changed(
        emitter: &SignalEmitter<'_>,
        account: &str,
        state: &str,
    ) -> zbus::Result<()>;
}

/// `/org/idlewild/Idlewild1/accounts/<name>`: one account's state, as properties.
struct AccountObject {
    info: AccountInfo,
}

#[zbus::interface(name = "org.idlewild.Idlewild1.Account")]
impl AccountObject {
    #[zbus(property)]
    fn name(&self) -> String {
        self.info.name.clone()
    }
    /// idle, syncing, paused, offline or error.
    #[zbus(property)]
    fn state(&self) -> String {
        self.info.state.clone()
    }
    #[zbus(property)]
    fn last_sync(&self) -> u64 {
        self.info.last_sync
    }
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.info.last_error.clone()
    }
    #[zbus(property)]
    fn unseen(&self) -> u32 {
        self.info.unseen
    }
    #[zbus(property)]
    fn total(&self) -> u32 {
        self.info.total
    }
    #[zbus(property)]
    fn paused(&self) -> bool {
        self.info.paused
    }
    #[zbus(property)]
    fn paused_until(&self) -> u64 {
        self.info.paused_until
    }
    #[zbus(property)]
    fn folders(&self) -> BTreeMap<String, (u32, u32)> {
        self.info.folders.clone()
    }
}
