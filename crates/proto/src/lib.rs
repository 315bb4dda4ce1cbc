//! Generated protobuf messages and gRPC services of every Spharos API and event.
//! Only the `grpc.rs` / `events.rs` boundary of each service touches these types.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of all Spharos protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spharos_descriptor.bin"));

pub mod spharos {
    pub mod billing {
        pub mod v1 {
            tonic::include_proto!("spharos.billing.v1");
        }
    }
    pub mod campaign {
        pub mod v1 {
            tonic::include_proto!("spharos.campaign.v1");
        }
    }
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("spharos.common.v1");
        }
    }
    pub mod coupon {
        pub mod v1 {
            tonic::include_proto!("spharos.coupon.v1");
        }
    }
    pub mod member {
        pub mod v1 {
            tonic::include_proto!("spharos.member.v1");
        }
    }
    pub mod points {
        pub mod v1 {
            tonic::include_proto!("spharos.points.v1");
        }
    }
    pub mod privacy {
        pub mod v1 {
            tonic::include_proto!("spharos.privacy.v1");
        }
    }
}

pub use spharos::billing::v1 as billing;
pub use spharos::campaign::v1 as campaign;
pub use spharos::coupon::v1 as coupon;
pub use spharos::{
    common::v1 as common, member::v1 as member, points::v1 as points, privacy::v1 as privacy,
};
