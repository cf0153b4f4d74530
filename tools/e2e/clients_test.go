package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

func durationFor(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// mintToken signs an HS256 JWT for user with the suite's secret.
func mintToken(t *testing.T, user string, admin bool) string {
	t.Helper()
	tok, err := auth.NewHS256Token(authSecret, user, admin, time.Hour)
	require.NoError(t, err)
	return tok
}

// adminContext replaces ctx's outgoing metadata with an operator's admin
// token, for the fleet-wide queries (the AuditService answers admins only).
func adminContext(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	return metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+mintToken(t, "e2e-operator", true)))
}

// readTopic returns every record of topic, partition by partition in
// offset order.
func readTopic(t *testing.T, brokers, topic string) []*bus.Message {
	t.Helper()
	addrs := strings.Split(brokers, ",")
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: addrs})
	require.NoError(t, err)
	client, err := sarama.NewClient(addrs, cfg)
	require.NoError(t, err)
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	require.NoError(t, err)
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	require.NoError(t, err, "partitions of %s", topic)
	var out []*bus.Message
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		require.NoError(t, err)
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		require.NoError(t, err)
		if newest <= oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, oldest)
		require.NoError(t, err)
		for off := oldest; off < newest; {
			select {
			case m := <-pc.Messages():
				msg := &bus.Message{Topic: m.Topic, Key: string(m.Key), Value: m.Value, Partition: m.Partition,
					Offset: m.Offset, Timestamp: m.Timestamp, Headers: map[string]string{}}
				for _, h := range m.Headers {
					msg.Headers[string(h.Key)] = string(h.Value)
				}
				out = append(out, msg)
				off = m.Offset + 1
			case <-time.After(30 * time.Second):
				require.FailNow(t, "timed out reading", "%s/%d at offset %d of %d", topic, p, off, newest)
			}
		}
		require.NoError(t, pc.Close())
	}
	return out
}

// getJSON fetches base+path and decodes the JSON answer into v; it
// returns the HTTP status.
func getJSON(ctx context.Context, base, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return resp.StatusCode, json.Unmarshal(b, v)
}

// jaegerSpan is a span of Jaeger's query API (/api/traces/{id}).
type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Service string `json:"-"`
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// fetchTrace returns the trace's spans with their service names, or nil
// while Jaeger does not know it.
func fetchTrace(ctx context.Context, jaeger, traceID string) ([]jaegerSpan, error) {
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	status, err := getJSON(ctx, jaeger, "/api/traces/"+traceID, &out)
	if status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil || len(out.Data) == 0 {
		return nil, err
	}
	tr := out.Data[0]
	spans := tr.Spans
	for i := range spans {
		spans[i].Service = tr.Processes[spans[i].ProcessID].ServiceName
	}
	return spans, nil
}

// mailpitMessage is one message of mailpit's search API.
type mailpitMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

func mailTo(ctx context.Context, mailpit, addr string) ([]mailpitMessage, error) {
	var out struct {
		Messages []mailpitMessage `json:"messages"`
	}
	_, err := getJSON(ctx, mailpit, "/api/v1/search?limit=100&query="+url.QueryEscape("to:"+addr), &out)
	return out.Messages, err
}
