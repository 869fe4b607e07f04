/// The last `capacity` keys seen: a set that forgets the oldest, so that what it remembers
/// stays bounded.
package struct RecentKeys<Key: Hashable> {
    package let capacity: Int
    private var keys: Set<Key> = []
    private var order: [Key] = []
    private var oldest = 0

    package init(capacity: Int) {
        self.capacity = capacity
    }

    /// Whether `key` was new (it is remembered from now on).
    package mutating func insert(_ key: Key) -> Bool {
        guard keys.insert(key).inserted else { return false }
        if order.count < capacity {
            order.append(key)
        } else {
            keys.remove(order[oldest])
            order[oldest] = key
            oldest = (oldest + 1) % capacity
        }
        return true
    }
}
