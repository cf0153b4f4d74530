package probes

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// AMQPConn is an amqpbus connection dialled on first use; once dialled it
// reconnects by itself. It is safe for concurrent use.
type AMQPConn struct {
	cfg    amqpbus.Config
	logger *slog.Logger
	reg    prometheus.Registerer

	mu   sync.Mutex
	conn *amqpbus.Conn
}

// NewAMQPConn returns a connection of cfg dialled on first use.
func NewAMQPConn(cfg amqpbus.Config, logger *slog.Logger, reg prometheus.Registerer) (*AMQPConn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &AMQPConn{cfg: cfg, logger: logger, reg: reg}, nil
}

// ComponentID is the id of the RabbitMQ broker component: "rabbitmq:<host:port>".
func (a *AMQPConn) ComponentID() string {
	u, err := url.Parse(a.cfg.URL)
	if err != nil || u.Host == "" {
		return "rabbitmq"
	}
	return "rabbitmq:" + u.Host
}

// Get returns the connection, dialling it if it was never established.
func (a *AMQPConn) Get(ctx context.Context) (*amqpbus.Conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		return a.conn, nil
	}
	conn, err := amqpbus.Dial(ctx, a.cfg, a.logger, a.reg)
	if err != nil {
		return nil, err
	}
	a.conn = conn
	return conn, nil
}

// Close closes the connection if it was dialled.
func (a *AMQPConn) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.conn = nil
	return err
}

// RabbitMQConfig configures the RabbitMQ probe.
type RabbitMQConfig struct {
	// ManagementURL is the management API, http://user:pass@host:15672;
	// empty skips queue depths.
	ManagementURL string
	// DepthThreshold is the number of ready messages in one queue above
	// which the broker is degraded.
	DepthThreshold int64
}

// RabbitMQProbe checks the AMQP connection (amqpbus Conn.Check) and, with
// the management API, the queue depths. One component covers both, so a
// broker outage raises one alert.
type RabbitMQProbe struct {
	conn *AMQPConn
	cfg  RabbitMQConfig
	http *http.Client
}

// NewRabbitMQProbe returns a probe of the broker behind conn.
func NewRabbitMQProbe(conn *AMQPConn, cfg RabbitMQConfig) *RabbitMQProbe {
	return &RabbitMQProbe{conn: conn, cfg: cfg, http: &http.Client{}}
}

// Name implements app.Probe.
func (p *RabbitMQProbe) Name() string { return p.conn.ComponentID() }

// Type implements app.Probe.
func (p *RabbitMQProbe) Type() domain.ComponentType { return domain.TypeBroker }

// Probe implements app.Probe.
func (p *RabbitMQProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	c := domain.Component{ID: p.Name(), Type: domain.TypeBroker, Status: domain.StatusHealthy, Detail: "connected"}
	var out app.Outcome
	conn, err := p.conn.Get(ctx)
	if err == nil {
		err = conn.Check(ctx)
	}
	if err != nil {
		c.Status, c.Detail = domain.StatusUnhealthy, fmt.Sprintf("amqp: %v", err)
	}
	if p.cfg.ManagementURL != "" {
		depths, merr := p.queueDepths(ctx)
		switch {
		case merr != nil:
			c.Status = domain.Worst(c.Status, domain.StatusDegraded)
			c.Detail += fmt.Sprintf("; management api: %v", merr)
		default:
			out.QueueDepths = depths
			var deep []string
			var total int64
			for _, d := range depths {
				total += d.Messages
				if d.Messages > p.cfg.DepthThreshold {
					deep = append(deep, fmt.Sprintf("%s%s %d", vhostPrefix(d.VHost), d.Queue, d.Messages))
				}
			}
			c.Metrics = map[string]float64{"queues": float64(len(depths)), "messages_ready": float64(total)}
			if len(deep) > 0 {
				c.Status = domain.Worst(c.Status, domain.StatusDegraded)
				c.Detail += fmt.Sprintf("; queues above %d ready: %s", p.cfg.DepthThreshold, strings.Join(deep, ", "))
			}
		}
	}
	c.Checked, c.Latency = time.Now(), time.Since(start)
	out.Components = []domain.Component{c}
	return out
}

func vhostPrefix(v string) string {
	if v == "/" || v == "" {
		return ""
	}
	return v + "/"
}

type mgmtQueue struct {
	Name          string `json:"name"`
	VHost         string `json:"vhost"`
	MessagesReady int64  `json:"messages_ready"`
}

// queueDepths reads the ready messages of every queue from the management API.
func (p *RabbitMQProbe) queueDepths(ctx context.Context) ([]domain.QueueDepth, error) {
	u, err := url.Parse(strings.TrimRight(p.cfg.ManagementURL, "/") + "/api/queues")
	if err != nil {
		return nil, fmt.Errorf("management url: %w", err)
	}
	u.RawQuery = url.Values{"columns": {"name,vhost,messages_ready"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pass)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %s", u.Redacted(), resp.Status)
	}
	var queues []mgmtQueue
	if err := json.NewDecoder(resp.Body).Decode(&queues); err != nil {
		return nil, fmt.Errorf("decode queues: %w", err)
	}
	out := make([]domain.QueueDepth, len(queues))
	for i, q := range queues {
		out[i] = domain.QueueDepth{VHost: q.VHost, Queue: q.Name, Messages: q.MessagesReady}
	}
	slices.SortFunc(out, func(a, b domain.QueueDepth) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}
