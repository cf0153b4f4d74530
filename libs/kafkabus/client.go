// Package kafkabus is the Kafka side of the fleet's message bus: an idempotent
// producer with delivery reports, a consumer group runner that marks an offset
// only once the handler's effect is durable (or the message sits in the
// dead-letter topic), and a create-or-verify of the topic catalogue.
//
// Producer, consumer and admin client share one sarama configuration built by
// ClientConfig, so connection settings such as TLS live in one place.
package kafkabus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/envconf"
)

// DefaultKafkaVersion is the protocol version spoken to the cluster. Kafka 4
// removed the protocol versions of releases before 2.1; 3.7 is accepted by
// every 3.7+ and 4.x broker.
const DefaultKafkaVersion = "3.7.0"

// instrumentationName is the tracer and meter name of this package.
const instrumentationName = "github.com/cosmic-horizons/fleet/libs/kafkabus"

// TLSConfig enables TLS towards the brokers when CAFile or CertFile is set.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs that sign the broker certificates;
	// empty means the system roots.
	CAFile string `env:"CA_FILE"`
	// CertFile and KeyFile are the PEM client certificate and key for mutual TLS.
	CertFile string `env:"CERT_FILE"`
	KeyFile  string `env:"KEY_FILE"`
	// ServerName overrides the name checked against the broker certificates.
	ServerName string `env:"SERVER_NAME"`
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CAFile != "" || t.CertFile != "" }

// Validate reports an incomplete TLS configuration.
func (t TLSConfig) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("kafka tls: cert file and key file must be set together")
	}
	return nil
}

// TLSConfigFromEnv reads KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE,
// KAFKA_TLS_KEY_FILE and KAFKA_TLS_SERVER_NAME from the process environment.
func TLSConfigFromEnv() TLSConfig {
	return ConnectionFromEnv().TLS
}

func (t TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls: read ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls: no certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Connection is what every Kafka client of the fleet needs to reach the
// cluster. Its `env` tags name the variables of the shared connection block
// (envconf.Load reads them).
type Connection struct {
	// Brokers are the bootstrap addresses, host:port (comma separated).
	Brokers []string `env:"KAFKA_BROKERS"`
	// ClientID names the client in broker logs and quotas; default "fleet".
	ClientID string `env:"KAFKA_CLIENT_ID"`
	// Version is the Kafka protocol version; default DefaultKafkaVersion.
	Version string    `env:"KAFKA_VERSION"`
	TLS     TLSConfig `envPrefix:"KAFKA_TLS_"`
}

// ConnectionFromEnv reads KAFKA_BROKERS (comma separated), KAFKA_CLIENT_ID,
// KAFKA_VERSION and KAFKA_TLS_{CA_FILE,CERT_FILE,KEY_FILE,SERVER_NAME} from
// the process environment.
func ConnectionFromEnv() Connection {
	return ConnectionFromLookup(os.LookupEnv)
}

// ConnectionFromLookup reads the variables of ConnectionFromEnv through
// lookup, trimmed; unset or blank ones leave their field empty.
func ConnectionFromLookup(lookup func(string) (string, bool)) Connection {
	var c Connection
	_ = envconf.Load(&c, lookup) // only strings: nothing can fail to parse
	return c
}

// Validate reports a connection that cannot work.
func (c Connection) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("kafka: empty broker address")
		}
	}
	if c.Version != "" {
		if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
			return fmt.Errorf("kafka: version %q: %w", c.Version, err)
		}
	}
	return c.TLS.Validate()
}

// ClientConfig returns the sarama configuration shared by producer, consumer
// and admin client: protocol version, client id, timeouts and TLS. Callers
// add their role's settings on top.
func ClientConfig(conn Connection) (*sarama.Config, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	cfg := sarama.NewConfig()
	version := conn.Version
	if version == "" {
		version = DefaultKafkaVersion
	}
	v, err := sarama.ParseKafkaVersion(version)
	if err != nil {
		return nil, fmt.Errorf("kafka: version %q: %w", version, err)
	}
	cfg.Version = v
	cfg.ClientID = conn.ClientID
	if cfg.ClientID == "" {
		cfg.ClientID = "fleet"
	}
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Net.ReadTimeout = 30 * time.Second
	cfg.Net.WriteTimeout = 30 * time.Second
	cfg.Metadata.Retry.Max = 10
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	cfg.Metadata.RefreshFrequency = 5 * time.Minute
	if conn.TLS.Enabled() {
		tc, err := conn.TLS.build()
		if err != nil {
			return nil, err
		}
		cfg.Net.TLS.Enable = true
		cfg.Net.TLS.Config = tc
	}
	return cfg, nil
}
