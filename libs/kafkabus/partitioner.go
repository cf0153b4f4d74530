package kafkabus

import (
	"encoding/binary"
	"hash"

	"github.com/IBM/sarama"
)

// newPartitioner places a keyed message exactly where Kafka's Java client
// would: toPositive(murmur2(key)) % partitions. Producers written in other
// languages (replay tools, connectors) then keep a job's events on the same
// partition, and so in order. Unkeyed messages spread randomly.
var newPartitioner = sarama.NewCustomPartitioner(
	sarama.WithAbsFirst(),
	sarama.WithCustomHashFunction(newMurmur2),
)

// murmur2 is the 32-bit MurmurHash2 variant of Kafka's Utils.murmur2
// (seed 0x9747b28c). It buffers the key: Kafka keys are short.
type murmur2 struct{ data []byte }

func newMurmur2() hash.Hash32 { return &murmur2{} }

func (h *murmur2) Write(p []byte) (int, error) { h.data = append(h.data, p...); return len(p), nil }
func (h *murmur2) Reset()                      { h.data = h.data[:0] }
func (h *murmur2) Size() int                   { return 4 }
func (h *murmur2) BlockSize() int              { return 4 }

func (h *murmur2) Sum(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, h.Sum32())
}

func (h *murmur2) Sum32() uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	data := h.data
	n := len(data)
	v := uint32(seed) ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> r
		k *= m
		v *= m
		v ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		v ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		v ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		v ^= uint32(tail[0])
		v *= m
	}
	v ^= v >> 13
	v *= m
	v ^= v >> 15
	return v
}

// PartitionFor returns the partition, of numPartitions, that a message with
// the non-empty key goes to: the choice of the producer above and of Kafka's
// Java client.
func PartitionFor(key string, numPartitions int32) int32 {
	h := newMurmur2()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32()&0x7fffffff) % numPartitions
}
