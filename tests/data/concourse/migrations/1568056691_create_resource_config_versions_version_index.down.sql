

 DROP INDEX resource_config_versions_version;


