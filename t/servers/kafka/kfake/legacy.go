package main

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce requests v0-v2 carry message sets (magic 0/1), which kfake does
// not accept (it speaks Kafka 4's Produce v3+ only). Older clients, such as
// the lua-resty-kafka packaged by Debian that the benchmarks compare
// against, send them; acceptLegacyProduce rewrites such a request into v3
// with a record batch (magic 2) before kfake handles it. The v3 response has
// the v2 layout, so a v2 client reads it as its own; v0/v1 clients are not
// supported (their responses differ).
func acceptLegacyProduce(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr, ok := req.(*kmsg.ProduceRequest)
		if !ok || pr.Version != 2 {
			return nil, nil, false
		}
		for ti := range pr.Topics {
			for pi := range pr.Topics[ti].Partitions {
				p := &pr.Topics[ti].Partitions[pi]
				if batch, err := messageSetToBatch(p.Records); err == nil {
					p.Records = batch
				}
			}
		}
		pr.Version = 3
		return nil, nil, false
	})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type legacyMsg struct {
	ts         int64
	key, value []byte // nil = null
}

// messageSetToBatch converts an uncompressed message set (magic 0 or 1) to
// one record batch.
func messageSetToBatch(set []byte) ([]byte, error) {
	var msgs []legacyMsg
	for len(set) > 0 {
		if len(set) < 12 {
			return nil, errors.New("truncated message set")
		}
		size := int(int32(binary.BigEndian.Uint32(set[8:12])))
		if size < 0 || len(set) < 12+size {
			return nil, errors.New("truncated message")
		}
		m := set[12 : 12+size]
		set = set[12+size:]
		if len(m) < 6 {
			return nil, errors.New("short message")
		}
		magic, attrs := m[4], m[5]
		if attrs&0x07 != 0 {
			return nil, errors.New("compressed message sets are not converted")
		}
		b := m[6:]
		var lm legacyMsg
		if magic == 1 {
			if len(b) < 8 {
				return nil, errors.New("short message")
			}
			lm.ts = int64(binary.BigEndian.Uint64(b))
			b = b[8:]
		}
		var err error
		if lm.key, b, err = bytesField(b); err != nil {
			return nil, err
		}
		if lm.value, _, err = bytesField(b); err != nil {
			return nil, err
		}
		msgs = append(msgs, lm)
	}
	if len(msgs) == 0 {
		return nil, errors.New("empty message set")
	}
	first, maxTS := msgs[0].ts, msgs[0].ts
	var recs []byte
	for i, m := range msgs {
		maxTS = max(maxTS, m.ts)
		var r []byte
		r = append(r, 0) // attributes
		r = binary.AppendVarint(r, m.ts-first)
		r = binary.AppendVarint(r, int64(i))
		r = appendVarBytes(r, m.key)
		r = appendVarBytes(r, m.value)
		r = binary.AppendVarint(r, 0) // no headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	// from attributes on: what the CRC covers
	var tail []byte
	tail = binary.BigEndian.AppendUint16(tail, 0) // attributes
	tail = binary.BigEndian.AppendUint32(tail, uint32(len(msgs)-1))
	tail = binary.BigEndian.AppendUint64(tail, uint64(first))
	tail = binary.BigEndian.AppendUint64(tail, uint64(maxTS))
	tail = binary.BigEndian.AppendUint64(tail, ^uint64(0)) // producer id -1
	tail = binary.BigEndian.AppendUint16(tail, 0xffff)     // producer epoch -1
	tail = binary.BigEndian.AppendUint32(tail, 0xffffffff) // base sequence -1
	tail = binary.BigEndian.AppendUint32(tail, uint32(len(msgs)))
	tail = append(tail, recs...)
	var out []byte
	out = binary.BigEndian.AppendUint64(out, 0)                       // base offset
	out = binary.BigEndian.AppendUint32(out, uint32(4+1+4+len(tail))) // batch length
	out = binary.BigEndian.AppendUint32(out, 0xffffffff)              // leader epoch -1
	out = append(out, 2)                                              // magic
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(tail, castagnoli))
	return append(out, tail...), nil
}

func bytesField(b []byte) ([]byte, []byte, error) {
	if len(b) < 4 {
		return nil, nil, errors.New("short field")
	}
	n := int32(binary.BigEndian.Uint32(b))
	b = b[4:]
	if n < 0 {
		return nil, b, nil
	}
	if int(n) > len(b) {
		return nil, nil, errors.New("short field")
	}
	return b[:n], b[n:], nil
}

func appendVarBytes(r, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(r, -1)
	}
	r = binary.AppendVarint(r, int64(len(v)))
	return append(r, v...)
}
