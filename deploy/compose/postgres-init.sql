-- One database per service (each service owns its data; none reads another's).
CREATE DATABASE auth;
CREATE DATABASE users;
CREATE DATABASE ratelimit;
