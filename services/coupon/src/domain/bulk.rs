//! Bulk issue jobs: one template to a list of members, processed in pages in the background
//! with a result per listed member, so a job survives restarts and reports its progress.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::template::IssueMethod;

/// The most members one job takes (bigger lists are split by the caller).
pub const MAX_MEMBERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkStatus {
    Running,
    Completed,
}

impl BulkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RUNNING" => Some(Self::Running),
            "COMPLETED" => Some(Self::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkIssue {
    pub id: Uuid,
    pub template_id: Uuid,
    pub issue_method: IssueMethod,
    pub status: BulkStatus,
    pub total: i64,
    pub processed: i64,
    pub issued: i64,
    pub failed: i64,
    pub created_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkItemStatus {
    Pending,
    Issued,
    Failed,
}

impl BulkItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Issued => "ISSUED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "ISSUED" => Some(Self::Issued),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One listed member and what happened to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkItem {
    pub position: i64,
    pub member_id: Uuid,
    pub status: BulkItemStatus,
    pub coupon_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
}
