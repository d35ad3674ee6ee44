//! The API's named errors: `org.idlewild.Idlewild1.Error.<Name>`, each with a message a person
//! understands.

use crate::control::ControlError;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.idlewild.Idlewild1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No account of that name is configured.
    UnknownAccount(String),
    /// A folder name that cannot be one (empty, a stray delimiter, a control character).
    InvalidFolder(String),
    /// An argument or option the method does not take.
    InvalidArgs(String),
    /// The account is paused; resume it first.
    Paused(String),
    /// A reload found the configuration file wrong; the running configuration stays.
    Config(String),
    /// The daemon is shutting down.
    Stopping(String),
    /// Anything else (e.g. the pause could not be recorded on disk).
    Failed(String),
}

impl From<ControlError> for Error {
    fn from(e: ControlError) -> Error {
        let message = e.to_string();
        match e {
            ControlError::UnknownAccount { .. } => Error::UnknownAccount(message),
            ControlError::InvalidFolder(_) => Error::InvalidFolder(message),
            ControlError::InvalidArgs(_) => Error::InvalidArgs(message),
            ControlError::Paused { .. } => Error::Paused(message),
            ControlError::Config(_) => Error::Config(message),
            ControlError::Stopping => Error::Stopping(message),
            ControlError::Failed(_) => Error::Failed(message),
        }
    }
}
