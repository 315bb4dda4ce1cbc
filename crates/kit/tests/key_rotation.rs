//! Master key rotation on both backends: data keys wrapped by the old master key keep opening
//! while both keys are configured, `rewrap_data_keys` moves every one to the new key (once),
//! and afterwards the new key alone opens them and decrypts the PII they protect.
use std::sync::Arc;

use sea_orm_migration::{MigrationTrait, MigratorTrait};
use spharos_kit::{
    TenantId,
    crypto::{
        DataKeysMigration, DataKeysRotationMigration, KeyRing, MasterKey, RewrapReport,
        rewrap_data_keys,
    },
    db::Db,
    testing::{self, TestBackend},
};

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(DataKeysMigration),
            Box::new(DataKeysRotationMigration),
        ]
    }
}

/// Master keys are not `Clone` (they are secrets): rebuild them from the same bytes.
fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

async fn rotation_rewraps_every_data_key_once(backend: TestBackend) {
    let (settings, _dir) = testing::settings(backend).await;
    let db = Db::open::<Migrator>(&settings.database, "rotation")
        .await
        .expect("the schema opens");
    let tenants: Vec<TenantId> = (0..3).map(|_| TenantId::generate()).collect();

    // Before: three tenants' data keys, wrapped by the old key, each protecting one value.
    let old = KeyRing::new(Arc::new(key(1)));
    let mut sealed = Vec::new();
    for t in &tenants {
        let tx = db.begin(*t).await.expect("tx");
        let dk = old.data_key(&tx, *t).await.expect("data key");
        sealed.push((
            dk.encrypt("010-1234-5678", "phone"),
            dk.blind_index("01012345678"),
        ));
        tx.commit().await.expect("commit");
    }

    // The new key alone cannot open them yet.
    let new_only = KeyRing::new(Arc::new(key(2)));
    let tx = db.begin(tenants[0]).await.expect("tx");
    assert!(
        new_only.data_key(&tx, tenants[0]).await.is_err(),
        "a key wrapped by the old master key must not open with the new one alone"
    );
    drop(tx);

    // During the rotation both are configured: running services keep opening every key.
    let both = Arc::new(key(2).with_previous([key(1)]));
    let during = KeyRing::new(both.clone());
    for (t, (ct, _)) in tenants.iter().zip(&sealed) {
        let tx = db.begin(*t).await.expect("tx");
        let dk = during
            .data_key(&tx, *t)
            .await
            .expect("opens with the previous key");
        assert_eq!(dk.decrypt(ct, "phone").expect("decrypts"), "010-1234-5678");
        tx.commit().await.expect("commit");
    }

    let report = rewrap_data_keys(&db, &both).await.expect("re-wrapped");
    assert_eq!(
        report,
        RewrapReport {
            rewrapped: 3,
            current: 0
        }
    );
    let again = rewrap_data_keys(&db, &both).await.expect("idempotent");
    assert_eq!(
        again,
        RewrapReport {
            rewrapped: 0,
            current: 3
        },
        "nothing twice"
    );

    // After: the new key alone opens every data key; values and blind indexes are unchanged.
    let after = KeyRing::new(Arc::new(key(2)));
    for (t, (ct, index)) in tenants.iter().zip(&sealed) {
        let tx = db.begin(*t).await.expect("tx");
        let dk = after
            .data_key(&tx, *t)
            .await
            .expect("opens with the new key");
        assert_eq!(dk.decrypt(ct, "phone").expect("decrypts"), "010-1234-5678");
        assert_eq!(
            &dk.blind_index("01012345678"),
            index,
            "phone lookups still match"
        );
        tx.commit().await.expect("commit");
    }

    // A key no configured master key opens stops the rotation with the tenant named.
    let stranger = key(9);
    let err = rewrap_data_keys(&db, &stranger)
        .await
        .expect_err("unknown key");
    assert!(
        err.to_string()
            .contains("opens with none of the configured master keys"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_every_data_key_once_postgres() {
    rotation_rewraps_every_data_key_once(TestBackend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_every_data_key_once_sqlite() {
    rotation_rewraps_every_data_key_once(TestBackend::Sqlite).await
}
