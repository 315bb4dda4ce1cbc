//! `spharos keys rotate`: re-wraps every tenant data key of the schemas that hold PII (member,
//! privacy) with the primary master key. Each schema is opened as `spharos serve` opens it
//! (migrations included), so the command also works before the first start of a new version.
use spharos_kit::{
    config::Settings,
    crypto::{RewrapReport, rewrap_data_keys},
    db::{Db, DbError},
    platform::load_keys,
};

use crate::AppError;

/// Re-wraps and prints one line per schema.
pub async fn rotate(settings: &Settings) -> Result<(), AppError> {
    let (_, _, master) = load_keys(settings).map_err(|e| AppError::Usage(format!("keys: {e}")))?;
    let mut total = RewrapReport::default();
    for schema in ["member", "privacy"] {
        if !settings.uses_postgres()
            && !settings
                .database
                .data_dir
                .join(format!("{schema}.db"))
                .exists()
        {
            println!("{schema}: 데이터 없음 / no database yet, nothing to re-wrap");
            continue;
        }
        let db = open(settings, schema).await?;
        let report = rewrap_data_keys(&db, &master)
            .await
            .map_err(|e| AppError::Other(format!("{schema}: {e}")))?;
        let _ = db.close().await;
        println!(
            "{schema}: 재암호화 {} / re-wrapped {}, 이미 최신 {} / already current {}",
            report.rewrapped, report.rewrapped, report.current, report.current
        );
        total.rewrapped += report.rewrapped;
        total.current += report.current;
    }
    println!(
        "완료 / done: {} data keys re-wrapped, {} already current",
        total.rewrapped, total.current
    );
    Ok(())
}

async fn open(settings: &Settings, schema: &str) -> Result<Db, AppError> {
    let opened = match schema {
        "member" => {
            Db::open::<spharos_member::store::migrations::Migrator>(&settings.database, schema)
                .await
        }
        "privacy" => {
            Db::open::<spharos_privacy::store::migrations::Migrator>(&settings.database, schema)
                .await
        }
        other => return Err(AppError::Other(format!("{other}: keeps no data keys"))),
    };
    opened.map_err(|e: DbError| AppError::Unavailable(e.to_string()))
}
