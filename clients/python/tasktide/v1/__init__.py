"""Generated from proto/tasktide/v1 by scripts/gen_proto.sh. Do not edit."""
