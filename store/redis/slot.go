package redis

import "strings"

// KeySlot returns the Redis Cluster hash slot of a Redis key, as CLUSTER
// KEYSLOT computes it: a key with a hash tag (a non-empty part between the
// first '{' and the next '}') hashes only that part. The keys of limiter key
// k live in KeySlot(store.Key(k, alg)).
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(slot(key))
}

// slot returns the Redis Cluster hash slot of a key that has a hash tag:
// CRC16 (XMODEM) of the tag, modulo 16384, as the servers compute it.
func slot(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^tag[i]]
	}
	return crc & 16383
}

var crc16tab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
