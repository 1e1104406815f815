//! Errors a control request can meet. Each carries a message that names what was wrong
//! and an exit status (an errno value, as tgtadm's exit statuses are).

/// errno values used as rtgtadm exit statuses, so scripts can tell failures apart.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const EOPNOTSUPP: i32 = 95;
    /// Used when the request could not be carried out for an internal reason.
    pub const EIO: i32 = 5;
}

/// A failed control request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmError {
    /// Something named in the request does not exist (target, LUN, binding, session).
    #[error("{0}")]
    NotFound(String),
    /// Creating something that already exists.
    #[error("{0}")]
    Exists(String),
    /// The object is in use (sessions logged in).
    #[error("{0}")]
    Busy(String),
    /// A bad or missing argument.
    #[error("{0}")]
    Invalid(String),
    /// A mode or operation rtgt does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else (I/O failing for a reason that is not the request's fault).
    #[error("{0}")]
    Internal(String),
}

impl AdmError {
    pub fn code(&self) -> i32 {
        match self {
            Self::NotFound(_) => errno::ENOENT,
            Self::Exists(_) => errno::EEXIST,
            Self::Busy(_) => errno::EBUSY,
            Self::Invalid(_) => errno::EINVAL,
            Self::Unsupported(_) => errno::EOPNOTSUPP,
            Self::Internal(_) => errno::EIO,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

impl From<AdmError> for crate::control::Response {
    fn from(e: AdmError) -> Self {
        crate::control::Response::error(e.code(), e.to_string())
    }
}
