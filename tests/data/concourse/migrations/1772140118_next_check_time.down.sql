ALTER TABLE resource_config_scopes
  DROP COLUMN IF EXISTS next_check_time;
