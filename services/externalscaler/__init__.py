"""Generated from proto/keda (KEDA's external scaler) by scripts/gen_proto.sh. Do not edit."""
