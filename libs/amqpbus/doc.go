// Package amqpbus is the RabbitMQ side of the fleet's event bus: one managed
// connection that reconnects by itself, the fleet's topology, a publisher with
// confirms and a consumer with manual acks that runs the same bus.Handler
// chain as the Kafka consumer.
//
// # Topology
//
// Declared idempotently on every (re)connect from a Topology (see
// DefaultTopology):
//
//   - job.events: durable topic exchange carrying job lifecycle events.
//   - notifications: durable topic exchange carrying in-app notifications.
//   - dlx: durable topic exchange receiving dead-lettered messages with their
//     original routing key, bound with "#" to
//   - dlq: durable queue holding dead letters for 7 days, at most 100,000.
//
// Consumer queues are declared with Conn.DeclareQueue from a QueueSpec; the
// connection remembers them and declares them again after a reconnect, so
// auto-delete and exclusive queues of live watchers come back too.
//
// # Routing keys
//
// Job events use "job.<user_id>.<job_id>.<event>", where <event> is the event
// type without its "job." prefix ("job.running" becomes "running"), so
//
//	JobPattern(jobID)   = "job.*.<job_id>.#"  one job
//	UserPattern(userID) = "job.<user_id>.#"   every job of one user
//	AllJobsPattern      = "job.#"             every job event
//
// Notifications use "user.<user_id>" (UserNotificationKey); AllUsersPattern
// ("user.*") binds to every user. Each word is escaped so that an id
// containing '.', '*', '#' or '%' stays one literal word: those characters
// become %2E, %2A, %23 and %25. Keys longer than 255 bytes are rejected by
// Publish.
//
// # Delivery guarantees
//
// Publish returns nil only after the broker confirmed the message (basic.ack
// in confirm mode). Messages are persistent, so a confirmed message routed to
// a durable queue has been written to disk and survives a broker restart. When
// the connection or channel is lost before the confirm arrives, Publish waits
// for the connection to come back and publishes the message again, until its
// context ends; the message may then reach the queue twice (at-least-once:
// consumers deduplicate on the message id, which is the event_id header when
// present). A broker nack (for example a full queue with overflow
// reject-publish) is returned as ErrNacked and not retried.
//
// # Failed messages
//
// A consumer acks a delivery only after the handler chain (Recover, Retry,
// Timeout) returned nil. A permanent error or exhausted retries reject the
// delivery without requeue, so the broker dead-letters it through the
// queue's dead-letter exchange (dlx → dlq) and adds the x-death header
// (queue, exchange, routing keys, reason "rejected", count, time). A reject
// cannot carry extra headers, so the failure reason is logged and recorded
// on the consumer span, not stored in the message.
package amqpbus
