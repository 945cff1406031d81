"""cioproc: a Kafka-native stream processor that forwards mParticle event batches to Customer.io."""

__version__ = "0.1.0"
