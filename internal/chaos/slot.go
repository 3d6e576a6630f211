package chaos

import "github.com/tollgate/tollgate/store/redis"

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Slot returns the Redis Cluster hash slot of a Redis key (redis.KeySlot).
//
// Tollgate's Redis store keeps a limiter key k under "tg:{" + escape(k) +
// "}:l", so the slot of k is Slot(store.Key(k, alg)).
func Slot(key string) int { return redis.KeySlot(key) }
