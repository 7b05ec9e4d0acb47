#!/usr/bin/env bash
# A small, steady load on both demo databases so the MySQL graphs move.
set -u
run() {
  mariadb -h "$1" -uroot -pdemo-root loadtest -e "$2" 2>/dev/null
}
for host in mariadb-1 mariadb-2; do
  until run "$host" "SELECT 1" >/dev/null; do sleep 2; done
  run "$host" "CREATE TABLE IF NOT EXISTS events (id INT AUTO_INCREMENT PRIMARY KEY, v INT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
done
while true; do
  for host in mariadb-1 mariadb-2; do
    run "$host" "INSERT INTO events (v) VALUES (FLOOR(RAND()*1000)); SELECT COUNT(*) FROM events WHERE v > 500; UPDATE events SET v = v + 1 ORDER BY RAND() LIMIT 1; DELETE FROM events WHERE id < (SELECT MAX(id) - 5000 FROM (SELECT id FROM events) AS t);" >/dev/null
  done
  sleep 0.5
done
