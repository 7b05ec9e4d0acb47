-- The monitoring user mysqld_exporter connects as (the privileges it needs).
CREATE USER IF NOT EXISTS 'exporter'@'%' IDENTIFIED BY 'exporter-demo' WITH MAX_USER_CONNECTIONS 10;
GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO 'exporter'@'%';
