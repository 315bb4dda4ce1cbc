//! `spharos serve --demo`: a demo tenant (강남·홍대·서면 stores, three grades, a few members) so a
//! first-time user can call the API at once. The tenant id is kept in `<data_dir>/demo-tenant`,
//! so restarting with `--demo` reuses it instead of seeding twice.
use std::net::SocketAddr;

use spharos_kit::{
    ServiceError, TenantId, auth::PERM_PII_UNMASK, auth::TokenSigner, config::Settings,
};
use spharos_member::{
    MemberApp,
    domain::{
        grade::GradeForm,
        member::{Gender, JoinChannel, JoinForm},
        store::NewStore,
    },
};

const STORES: &[(&str, &str, &str, &str)] = &[
    ("GN001", "강남역점", "서울", "강남역"),
    ("HD001", "홍대입구점", "서울", "홍대입구"),
    ("BS001", "서면점", "부산", "서면"),
];

const GRADES: &[(&str, i64, i32)] = &[
    ("일반", 0, 100),
    ("실버", 300_000, 200),
    ("골드", 1_000_000, 300),
];

const MEMBERS: &[(&str, &str, &str, &str)] = &[
    ("홍길동", "010-1234-5678", "hong@example.com", "1988-03-15"),
    (
        "김영희",
        "010-2345-6789",
        "younghee@example.com",
        "1992-11-02",
    ),
    ("이철수", "010-3456-7890", "", "1979-07-21"),
    ("박지민", "010-4567-8901", "jimin@example.com", ""),
];

/// Creates (once) and prints the demo tenant.
pub async fn seed(
    settings: &Settings,
    signer: &TokenSigner,
    app: &MemberApp,
    grpc: SocketAddr,
) -> Result<(), ServiceError> {
    let marker = settings.database.data_dir.join("demo-tenant");
    let existing = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse::<TenantId>().ok());
    let tenant = match existing {
        Some(t) => t,
        None => {
            let tenant = TenantId::generate();
            populate(app, tenant).await?;
            std::fs::write(&marker, tenant.to_string()).map_err(|e| {
                ServiceError::internal(format!("cannot write {}: {e}", marker.display()))
            })?;
            tenant
        }
    };
    let token = signer.mint(
        tenant,
        "demo-admin",
        &[PERM_PII_UNMASK],
        settings.auth.token_ttl_seconds,
    );
    println!(
        "\n데모 테넌트 (demo tenant): {tenant}\n\
         매장 {stores}곳, 등급 {grades}개, 회원 {members}명 (stores, grades, members)\n\n\
         API 토큰 (token):\n{token}\n\n\
         예시 (try):\n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {grpc} spharos.member.v1.MemberService/ListMembers\n",
        stores = STORES.len(),
        grades = GRADES.len(),
        members = MEMBERS.len(),
    );
    Ok(())
}

async fn populate(app: &MemberApp, tenant: TenantId) -> Result<(), ServiceError> {
    let mut first_store = None;
    for (code, name, region, area) in STORES {
        let store = app
            .create_store(
                tenant,
                NewStore {
                    code: (*code).into(),
                    name: (*name).into(),
                    region: (*region).into(),
                    trade_area: (*area).into(),
                    status: None,
                },
            )
            .await?;
        first_store.get_or_insert(store.id);
    }
    app.set_grades(
        tenant,
        GRADES
            .iter()
            .map(|(name, min, rate)| GradeForm {
                id: String::new(),
                name: (*name).into(),
                min_purchase_krw: *min,
                points_rate_bp: *rate,
            })
            .collect(),
    )
    .await?;
    for (i, (name, phone, email, birth)) in MEMBERS.iter().enumerate() {
        app.join(
            tenant,
            JoinForm {
                name: (*name).into(),
                phone: (*phone).into(),
                email: (*email).into(),
                birth_date: (*birth).into(),
                gender: if i % 2 == 0 {
                    Gender::Male
                } else {
                    Gender::Female
                },
                join_store_id: first_store.map(|s| s.to_string()).unwrap_or_default(),
                join_channel: JoinChannel::Pos,
                card_type: None,
                idempotency_key: format!("demo-join-{i}"),
            },
        )
        .await?;
    }
    Ok(())
}
