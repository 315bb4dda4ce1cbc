{{/* Name of the release's objects. */}}
{{- define "spharos.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spharos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: spharos
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "spharos.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "spharos.operatorImage" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The workloads: [name, target] pairs for the selected mode. */}}
{{- define "spharos.workloads" -}}
{{- $full := include "spharos.fullname" . -}}
{{- if eq .Values.mode "monolithic" -}}
- name: {{ $full }}
  component: all
  target: all
{{- else -}}
{{- range .Values.services }}
- name: {{ printf "%s-%s" $full . | trunc 63 | trimSuffix "-" }}
  component: {{ . }}
  target: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The gRPC address of the billing service in this release. */}}
{{- define "spharos.billingEndpoint" -}}
{{- $full := include "spharos.fullname" . -}}
{{- if .Values.operator.billingEndpoint -}}
{{ .Values.operator.billingEndpoint }}
{{- else if eq .Values.mode "monolithic" -}}
http://{{ $full }}.{{ .Release.Namespace }}.svc:{{ .Values.ports.grpc }}
{{- else -}}
http://{{ printf "%s-billing" $full | trunc 63 | trimSuffix "-" }}.{{ .Release.Namespace }}.svc:{{ .Values.ports.grpc }}
{{- end -}}
{{- end -}}

{{/* The shared front door (member service, or the monolith). */}}
{{- define "spharos.sharedEndpoint" -}}
{{- $full := include "spharos.fullname" . -}}
{{- if .Values.operator.sharedEndpoint -}}
{{ .Values.operator.sharedEndpoint }}
{{- else if eq .Values.mode "monolithic" -}}
http://{{ $full }}.{{ .Release.Namespace }}.svc:{{ .Values.ports.grpc }}
{{- else -}}
http://{{ printf "%s-member" $full | trunc 63 | trimSuffix "-" }}.{{ .Release.Namespace }}.svc:{{ .Values.ports.grpc }}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the platform's public key for the operator; empty when none. */}}
{{- define "spharos.platformPublicKeyConfigMap" -}}
{{- if .Values.keys.publicKey.existingConfigMap -}}
{{ .Values.keys.publicKey.existingConfigMap }}
{{- else if .Values.keys.publicKey.pem -}}
{{ printf "%s-platform-public-key" (include "spharos.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- end -}}
