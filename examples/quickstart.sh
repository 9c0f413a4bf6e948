#!/bin/sh
# A one-minute tour of pubsub: topics, producing, consuming, consumer groups.
# Runs against $PUBSUB_DB (default ./demo.db), which it starts afresh.
set -eu

export PUBSUB_DB="${PUBSUB_DB:-demo.db}"
rm -f "$PUBSUB_DB" "$PUBSUB_DB-wal" "$PUBSUB_DB-shm"

step() {
    printf '\n$ %s\n' "$1"
    sh -c "$1"
}

echo "pubsub quickstart, database: $PUBSUB_DB"

step 'pubsub topic create orders --partitions 3 --retention 7d'
step 'pubsub produce orders "first order" "second order"'
step 'printf "%s\n" apple banana cherry | pubsub produce orders --print-offsets'
step 'printf "cust-1:{\"total\":12}\ncust-2:{\"total\":30}\n" | pubsub produce orders -K : -H source=shop'
step 'pubsub consume orders'
step 'pubsub consume orders --format "%p:%o key=%k value=%s\n"'
step 'pubsub consume orders -n 2 --format json'

echo
echo "# A consumer group remembers where it stopped:"
step 'pubsub consume orders --group billing -n 3'
step 'pubsub consume orders --group billing'
step 'pubsub produce orders "late order"'
step 'pubsub consume orders --group billing'

step 'pubsub group describe billing --json'

echo
echo "# Run a command per record; the offset is committed only when it exits 0:"
step 'pubsub consume orders --group sizes --exec '"'"'echo "$PUBSUB_PARTITION:$PUBSUB_OFFSET is $(wc -c) bytes"'"'"

echo
echo "# Copy a topic losslessly through the JSON envelope:"
step 'pubsub topic create orders-copy --partitions 3'
step 'pubsub consume orders --format json | pubsub produce orders-copy --format json'
step 'pubsub consume orders-copy --format "%p:%o %s\n"'

step 'pubsub topic describe orders --json'
step 'pubsub db info --json'
