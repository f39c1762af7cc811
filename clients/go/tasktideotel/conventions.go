package tasktideotel

import "go.opentelemetry.io/otel/attribute"

// Names from the OpenTelemetry messaging semantic conventions as tasktide uses them, the same in
// every language (Python: tasktide.contrib.opentelemetry.conventions). Span names are
// "{operation} {queue}": "send" (PRODUCER, one Submit; CLIENT for a SubmitBatch, with a "create"
// PRODUCER span per task) on a client, "process" (CONSUMER, one attempt) on a worker.
const (
	System = "tasktide"

	MessagingSystem = "messaging.system"
	OperationName   = "messaging.operation.name"
	OperationType   = "messaging.operation.type"
	Destination     = "messaging.destination.name"
	MessageID       = "messaging.message.id"
	BatchCount      = "messaging.batch.message_count"
	ClientID        = "messaging.client.id"

	TaskName     = "tasktide.task.name"
	TaskAttempt  = "tasktide.task.attempt"
	TaskDelivery = "tasktide.task.delivery"
	Outcome      = "tasktide.outcome"

	DefaultQueue = "default"
)

// operationTypes is messaging.operation.type for each tasktide operation of a client or worker.
var operationTypes = map[string]string{"send": "send", "create": "create", "process": "process"}

func queueOf(name string) string {
	if name == "" {
		return DefaultQueue
	}
	return name
}

// SpanName is "{operation} {queue}".
func SpanName(operation, queue string) string { return operation + " " + queueOf(queue) }

// attributes are the messaging attributes of an operation on a queue (and one task, if given).
func attributes(operation, queue, taskID, taskName string) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String(MessagingSystem, System),
		attribute.String(OperationName, operation),
		attribute.String(OperationType, operationTypes[operation]),
		attribute.String(Destination, queueOf(queue)),
	}
	if taskID != "" {
		attrs = append(attrs, attribute.String(MessageID, taskID))
	}
	if taskName != "" {
		attrs = append(attrs, attribute.String(TaskName, taskName))
	}
	return attrs
}
