package amqpbus

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxShortString is the AMQP limit on routing keys, queue and exchange names.
const maxShortString = 255

// AllJobsPattern binds to every job event (and to nothing else published on
// the exchange, such as the health-monitor's canaries).
const AllJobsPattern = "job.#"

// AllUsersPattern binds to the notifications of every user.
const AllUsersPattern = "user.*"

// JobRoutingKey is the routing key of a job event on job.events:
// "job.<user_id>.<job_id>.<event>", where event is eventType without its
// "job." prefix ("job.queued" → "queued").
func JobRoutingKey(userID, jobID, eventType string) string {
	return "job." + escapeWord(userID) + "." + escapeWord(jobID) + "." + escapeWord(strings.TrimPrefix(eventType, "job."))
}

// JobPattern binds to every event of one job.
func JobPattern(jobID string) string { return "job.*." + escapeWord(jobID) + ".#" }

// UserPattern binds to every job event of one user.
func UserPattern(userID string) string { return "job." + escapeWord(userID) + ".#" }

// EventTypePattern binds to one event type of every job, e.g. "job.failed".
func EventTypePattern(eventType string) string {
	return "job.*.*." + escapeWord(strings.TrimPrefix(eventType, "job."))
}

// UserNotificationKey is the routing key of a notification for one user on
// the notifications exchange, and the pattern that binds to them.
func UserNotificationKey(userID string) string { return "user." + escapeWord(userID) }

// maxWord bounds one escaped word of a routing key, so that a job key
// ("job." + user + "." + job id + "." + event) stays within the AMQP limit of
// 255 bytes whatever the ids: a longer word is replaced by "~" and the
// SHA-256 of the id (hex, 64 characters). The replacement is the same for
// keys and binding patterns, so routing still works, and "~" is escaped in
// ids so that no short id can be taken for a hashed one.
const maxWord = 72

// wordEscaper keeps an id one literal word of a topic routing key.
var wordEscaper = strings.NewReplacer("%", "%25", ".", "%2E", "*", "%2A", "#", "%23", "~", "%7E")

func escapeWord(s string) string {
	w := wordEscaper.Replace(s)
	if len(w) <= maxWord {
		return w
	}
	sum := sha256.Sum256([]byte(s))
	return "~" + hex.EncodeToString(sum[:])
}
