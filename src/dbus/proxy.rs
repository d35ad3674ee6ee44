//! Client proxies for the API, shared by the command line and the tests.

use std::collections::{BTreeMap, HashMap};

use super::AccountInfo;

#[zbus::proxy(
    interface = "org.idlewild.Idlewild1",
    default_service = "org.idlewild.Idlewild1",
    default_path = "/org/idlewild/Idlewild1"
)]
pub trait Manager {
    fn sync(&self, account: &str, folders: &[&str]) -> zbus::Result<u64>;
    fn sync_all(&self) -> zbus::Result<u64>;
    fn sync_with_options(
        &self,
        account: &str,
        folders: &[&str],
        options: HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<u64>;
    fn pause(&self, account: &str, seconds: u32) -> zbus::Result<()>;
    fn resume(&self, account: &str) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn status(&self) -> zbus::Result<BTreeMap<String, AccountInfo>>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn accounts(&self) -> zbus::Result<Vec<zbus::OwnedObjectPath>>;

    #[zbus(signal)]
    fn sync_started(&self, account: &str, jobs: Vec<u64>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn sync_finished(
        &self,
        account: &str,
        jobs: Vec<u64>,
        received: u32,
        sent: u32,
        error: &str,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_finished(&self, job: u64, status: &str, error: &str, report: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn new_mail(&self, account: &str, folder: &str, count: u32) -> zbus::Result<()>;
    #[zbus(signal)]
    fn state_changed(&self, account: &str, state: &str) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.idlewild.Idlewild1.Account",
    default_service = "org.idlewild.Idlewild1"
)]
pub trait Account {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_sync(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unseen(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn total(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn paused(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn paused_until(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn folders(&self) -> zbus::Result<BTreeMap<String, (u32, u32)>>;
}
